// The dashboard's live co-editor: a document's body as a Yjs `Y.Text` ("body") in a CodeMirror 6
// editor, kept in step with the server over the `doc` stream of the websocket protocol
// (docs/protocol.md, "Live co-editing"). Bundled by deploy/editor/build.sh into
// handlers/static/editor.js; app.js imports it when a document is opened.
//
//   const editor = mountEditor(parent, {
//     document: "<id>", user: { id, name }, role: "owner" | "editor" | "viewer", transport,
//     onStatus(status) {},       // "offline" | "online" | "synced"
//     onReadOnly(reason) {},     // why the editor takes no input (for people), or null once it does
//     onError(message) {},       // something to show (a refused update, a failed save)
//   });
//   editor.text(); await editor.save(); editor.status; editor.destroy();
//
// The transport is the page's websocket (app.js adapts feed.js to it):
//   transport.connected                    true once the socket is authenticated
//   transport.subscribe(params, on)        the `doc` subscription; `params()` is asked at every
//                                          (re)subscribe, `on.reset()` comes before each of them,
//                                          `on.event(frame)` per event, `on.error(frame)` if refused.
//                                          Returns {close(), drop(), again()}: unsubscribe; forget
//                                          without a frame (the server ended it); unsubscribe and
//                                          subscribe again now.
//   transport.send(frame, reply)           sends now or not at all (false: not connected; nothing is
//                                          queued); `reply(answer)` gets the frame answering its `id`
//                                          (doc.ack, doc.saved, error), or a made-up `unavailable`
//                                          error if the connection drops first.
//   transport.watch(listener)              listener(connected) on every change; returns an unwatch.
//
// Offline typing is never queued as frames: on every (re)subscribe the client sends its state vector,
// the server's `sync` answers with what the client lacks and the server's own vector, and the client
// sends `Y.encodeStateAsUpdate(ydoc, serverVector)`: everything the server lacks, once, merged.

import * as Y from "yjs";
import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate, removeAwarenessStates } from "y-protocols/awareness";
import { yCollab, ySyncAnnotation, yUndoManagerKeymap } from "y-codemirror.next";
import { EditorView, basicSetup } from "codemirror";
import { Compartment, EditorState, Prec } from "@codemirror/state";
import { keymap } from "@codemirror/view";

const utf8 = new TextEncoder();
const REMOTE = "remote"; // the origin of everything that came from the server
// The server takes COEDIT_RATE (30) frames a second per connection and document, updates and awareness
// together: local updates are merged and sent at most 12 times a second, the cursor at most 7 times.
const UPDATE_EVERY_MS = 80;
const AWARENESS_EVERY_MS = 150;
const RETRY_MS = 2000; // a refused or rate-limited update: subscribe again (a fresh sync) after this
const MAX_TEXT = 1_000_000; // the server's limit on the text, in characters
const MAX_INSERT_BYTES = 200_000; // one update is at most 256 KiB decoded: a bigger paste is refused here
const HEX_COLOR = /^#[0-9a-fA-F]{3,8}$/;
const VIEWER = "You can read this document; only its owner and editors can change it.";
const SHOW_BUSY_AFTER_MS = 400; // "synced" turns "online" only if an update waits longer than this

// --- base64 (standard alphabet, padded) ----------------------------------------------------------

export function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// --- colours ---------------------------------------------------------------------------------------

// A colour per user, the same in every browser: a hue from the user id, dark enough for white text.
export function userColor(id) {
  let hash = 2166136261;
  for (const char of String(id)) hash = Math.imul(hash ^ char.codePointAt(0), 16777619) >>> 0;
  const color = hslToHex(hash % 360, 0.65, 0.42);
  return { color, colorLight: `${color}33` };
}

function hslToHex(h, s, l) {
  const a = s * Math.min(l, 1 - l);
  const channel = (n) => {
    const k = (n + h / 30) % 12;
    const value = l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return Math.round(value * 255).toString(16).padStart(2, "0");
  };
  return `#${channel(0)}${channel(8)}${channel(4)}`;
}

// The page's Content-Security-Policy (default-src 'self', no 'unsafe-inline') keeps inline styles from
// applying; stylesheets built through the CSSOM (constructed, adopted) are allowed.
//
// y-codemirror.next colours remote carets and selections with `style` attributes, which the policy
// keeps from applying. The attributes are still in the
// DOM, so a constructed stylesheet (CSSOM, which the policy allows) gives each colour it sees a rule
// that matches them. Only plain hex colours are used: the values come from other people's browsers.
class RemoteColors {
  constructor() {
    this.seen = new Set();
    this.sheet = typeof CSSStyleSheet === "function" && "adoptedStyleSheets" in document ? new CSSStyleSheet() : null;
    if (this.sheet) document.adoptedStyleSheets = [...document.adoptedStyleSheets, this.sheet];
  }

  add(user) {
    if (!this.sheet || !user) return;
    const { color } = user;
    const colorLight = user.colorLight || `${color}33`;
    if (!HEX_COLOR.test(color) || !HEX_COLOR.test(colorLight) || this.seen.has(`${color} ${colorLight}`)) return;
    this.seen.add(`${color} ${colorLight}`);
    this.sheet.insertRule(`.cm-editor .cm-content .cm-ySelectionCaret[style^="background-color: ${color};"] ` +
      `{ background-color: ${color}; border-color: ${color}; }`);
    this.sheet.insertRule(`.cm-editor .cm-content .cm-ySelection[style="background-color: ${colorLight}"], ` +
      `.cm-editor .cm-content .cm-yLineSelection[style="background-color: ${colorLight}"] { background-color: ${colorLight}; }`);
  }

  destroy() {
    if (this.sheet) document.adoptedStyleSheets = document.adoptedStyleSheets.filter((sheet) => sheet !== this.sheet);
  }
}

// CodeMirror's own CSS (style-mod) goes into a <style> element it puts in <head>, which the same
// policy blocks: what it holds is mirrored into a constructed stylesheet. Only that element (the one
// the first EditorView adds) is mirrored, and it is followed as CodeMirror adds rules to it.
let mirrored = false;
function adoptCodeMirrorStyles(before) {
  if (mirrored || typeof CSSStyleSheet !== "function" || !("adoptedStyleSheets" in document)) return;
  const tag = [...document.head.querySelectorAll("style")].find((style) => !before.has(style));
  if (!tag) return;
  mirrored = true;
  const sheet = new CSSStyleSheet();
  const copy = () => sheet.replaceSync(tag.textContent);
  copy();
  new MutationObserver(copy).observe(tag, { childList: true, characterData: true, subtree: true });
  document.adoptedStyleSheets = [sheet, ...document.adoptedStyleSheets];
}

// --- the editor ------------------------------------------------------------------------------------

export function mountEditor(parent, options) {
  const {
    document: documentId, user, transport, label = "Body",
    onStatus = () => {}, onReadOnly = () => {}, onError = () => {},
  } = options;
  const prefix = `${documentId.slice(-6)}-${Math.random().toString(36).slice(2, 8)}`;
  let counter = 0;
  const frameId = (kind) => `${kind}-${prefix}-${(counter += 1)}`;

  const ydoc = new Y.Doc();
  const ytext = ydoc.getText("body");
  const awareness = new Awareness(ydoc);
  const undoManager = new Y.UndoManager(ytext);
  const colors = new RemoteColors();
  const me = { name: user.name, ...userColor(user.id) };
  awareness.setLocalStateField("user", me);
  colors.add(me);

  let role = options.role || "viewer";
  let ended = null; // why the editor stopped for good (left, deleted, forbidden, refused)
  let synced = false; // the current subscription had its `sync`: local updates may go out
  let unacked = 0; // doc.update frames sent and not answered yet
  let status = null;
  let outgoing = []; // local updates waiting for the next send (merged into one frame)
  let updateTimer = null;
  let lastUpdateSent = 0;
  let awarenessTimer = null;
  let lastAwarenessSent = 0;
  let retryTimer = null;
  let refusals = 0; // refused updates in a row: after a few, the editor stops
  let destroyed = false;

  // --- the CodeMirror view -------------------------------------------------------------------------

  const editable = new Compartment();
  const editability = () => {
    const on = !ended && role !== "viewer";
    return [EditorState.readOnly.of(!on), EditorView.editable.of(on)];
  };
  // Keeps the text within what the server takes, instead of having the server refuse it.
  const withinLimits = EditorState.transactionFilter.of((tr) => {
    if (!tr.docChanged || tr.annotation(ySyncAnnotation) !== undefined) return tr; // others' text is never held back
    let inserted = 0; // UTF-8 bytes, at most (a UTF-16 unit is at most 3 bytes)
    tr.changes.iterChanges((_fromA, _toA, _fromB, _toB, text) => { inserted += text.length * 3; });
    if (inserted > MAX_INSERT_BYTES) {
      inserted = 0;
      tr.changes.iterChanges((_fromA, _toA, _fromB, _toB, text) => { inserted += utf8.encode(text.toString()).length; });
    }
    if (tr.newDoc.length <= MAX_TEXT && inserted <= MAX_INSERT_BYTES) return tr;
    queueMicrotask(() => onError(tr.newDoc.length > MAX_TEXT
      ? `The text would be over ${MAX_TEXT.toLocaleString()} characters: not inserted.`
      : `At most ${(MAX_INSERT_BYTES / 1000).toLocaleString()} kB can be pasted at once: not inserted.`));
    return [];
  });
  const stylesBefore = new Set(document.head.querySelectorAll("style"));
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        Prec.highest(keymap.of(yUndoManagerKeymap)), // undo is Yjs's (own edits only), not CodeMirror's history
        basicSetup,
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ "aria-label": label }),
        editable.of(editability()),
        withinLimits,
        yCollab(ytext, awareness, { undoManager }),
      ],
    }),
  });

  adoptCodeMirrorStyles(stylesBefore);

  const refreshEditable = () => view.dispatch({ effects: editable.reconfigure(editability()) });

  function changeRole(next) {
    if (next !== role) {
      role = next;
      refreshEditable();
    }
    if (!ended) onReadOnly(role === "viewer" ? VIEWER : null);
  }

  let busyTimer = null;
  function setStatus(next) {
    clearTimeout(busyTimer);
    if (next === status || destroyed) return;
    // Typing while synced: "online" only if an ack takes a while, not for every keystroke.
    if (next === "online" && status === "synced" && synced) {
      busyTimer = setTimeout(() => { status = "online"; onStatus("online"); }, SHOW_BUSY_AFTER_MS);
      return;
    }
    status = next;
    onStatus(next);
  }

  // offline: no socket; online: connected, waiting for the sync or for acks; synced: the server has it all.
  function showStatus() {
    if (ended) return;
    if (!transport.connected) setStatus("offline");
    else setStatus(synced && !unacked && !outgoing.length ? "synced" : "online");
  }

  function end(reason) {
    if (ended) return;
    ended = reason;
    synced = false;
    outgoing = [];
    clearTimeout(updateTimer);
    clearTimeout(retryTimer);
    refreshEditable();
    onReadOnly(reason);
  }

  // --- local changes out ---------------------------------------------------------------------------

  ydoc.on("update", (update, origin) => {
    if (origin === REMOTE || ended) return;
    // Offline, or before the sync: nothing is kept as frames. The next sync sends what the server lacks.
    if (!synced || !transport.connected) { showStatus(); return; }
    outgoing.push(update);
    if (!updateTimer) updateTimer = setTimeout(flushUpdates, Math.max(0, lastUpdateSent + UPDATE_EVERY_MS - Date.now()));
    showStatus();
  });

  function flushUpdates() {
    clearTimeout(updateTimer);
    updateTimer = null;
    if (!outgoing.length) return;
    const update = outgoing.length === 1 ? outgoing[0] : Y.mergeUpdates(outgoing);
    outgoing = [];
    sendUpdate(update);
  }

  function sendUpdate(update) {
    if (ended || !synced) return;
    lastUpdateSent = Date.now();
    const frame = { type: "doc.update", id: frameId("u"), document: documentId, update: toBase64(update) };
    if (!transport.send(frame, updateAnswered)) return; // the next sync sends it
    unacked += 1;
    showStatus();
  }

  function updateAnswered(answer) {
    unacked = Math.max(0, unacked - 1);
    if (answer.type === "error") updateRefused(answer);
    else refusals = 0;
    showStatus();
  }

  // A refused update was not stored, and the ones after it depend on it: the editor syncs again, which
  // sends whatever the server lacks in one piece. `forbidden` (the role changed) ends editing; an update
  // refused again and again (it breaks a limit) stops the editor, whose text the server cannot take.
  function updateRefused(answer) {
    if (answer.code === "unavailable" && !transport.connected) return; // dropped: the reconnect syncs
    if (answer.code === "forbidden") {
      role = "viewer";
      end("You can no longer edit this document (read-only).");
      onError(answer.message || "Your change was refused: you may not edit this document.");
      return;
    }
    refusals += 1;
    onError(`Your change was not stored (${answer.message || answer.code}); sending it again.`);
    if (refusals > 3) {
      end("The server keeps refusing this text; reload the page to continue (your last changes may be lost).");
      return;
    }
    resyncSoon(answer.code === "bad_request" ? 0 : RETRY_MS);
  }

  function resyncSoon(delay) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => {
      if (ended || destroyed) return;
      synced = false;
      outgoing = [];
      subscription.again();
      showStatus();
    }, delay);
  }

  // --- awareness (cursor, name, colour) --------------------------------------------------------------

  awareness.on("update", ({ added, updated, removed }, origin) => {
    for (const id of [...added, ...updated]) colors.add(awareness.getStates().get(id)?.user);
    if (origin === REMOTE) return;
    if (![...added, ...updated, ...removed].includes(ydoc.clientID)) return;
    if (!awarenessTimer) awarenessTimer = setTimeout(sendAwareness, Math.max(0, lastAwarenessSent + AWARENESS_EVERY_MS - Date.now()));
  });

  function sendAwareness() {
    clearTimeout(awarenessTimer);
    awarenessTimer = null;
    if (!synced || !transport.connected) return; // the state goes out again after the next sync
    lastAwarenessSent = Date.now();
    transport.send({ type: "doc.awareness", document: documentId, update: toBase64(encodeAwarenessUpdate(awareness, [ydoc.clientID])) });
  }

  function forgetOthers() {
    const others = [...awareness.getStates().keys()].filter((id) => id !== ydoc.clientID);
    if (others.length) removeAwarenessStates(awareness, others, REMOTE);
  }

  // --- the `doc` subscription ------------------------------------------------------------------------

  const subscription = transport.subscribe(
    () => ({ id: documentId, vector: toBase64(Y.encodeStateVector(ydoc)) }),
    {
      reset() { // before every (re)subscribe: wait for its sync
        synced = false;
        outgoing = [];
        showStatus();
      },
      event(frame) { received(frame.op, frame.data); },
      error(frame) { subscribeRefused(frame); },
    },
  );

  function received(op, data) {
    if (destroyed) return;
    if (op === "sync") {
      Y.applyUpdate(ydoc, fromBase64(data.update), REMOTE);
      synced = true;
      if (data.role) changeRole(data.role);
      if (!ended && role !== "viewer") {
        const missing = Y.encodeStateAsUpdate(ydoc, fromBase64(data.vector));
        if (missing.length > 2) sendUpdate(missing); // typed offline, or before this sync
      }
      lastAwarenessSent = 0;
      sendAwareness();
    } else if (op === "update") {
      Y.applyUpdate(ydoc, fromBase64(data.update), REMOTE);
    } else if (op === "awareness") {
      applyAwarenessUpdate(awareness, fromBase64(data.update), REMOTE);
    } else if (op === "leave" || op === "delete") {
      subscription.drop(); // the subscription is over on the server
      forgetOthers();
      end(op === "delete" ? "This document was deleted." : "You no longer have access to this document.");
    }
    showStatus();
  }

  function subscribeRefused(frame) {
    synced = false;
    if (["unavailable", "rate_limited", "internal"].includes(frame.code)) {
      onError(`The live editor is not available right now (${frame.message || frame.code}); trying again.`);
      clearTimeout(retryTimer);
      retryTimer = setTimeout(() => { if (!ended && !destroyed) subscription.again(); }, 5000);
    } else {
      end(frame.code === "not_found" ? "This document does not exist or is not shared with you."
        : `The live editor was refused: ${frame.message || frame.code}.`);
    }
    showStatus();
  }

  const unwatch = transport.watch((connected) => {
    if (!connected) {
      synced = false;
      unacked = 0;
      outgoing = [];
      forgetOthers(); // their cursors are stale; they come back with the next sync
    }
    showStatus();
  });
  showStatus();
  if (role === "viewer") onReadOnly(VIEWER);

  return {
    view,
    ydoc,
    awareness,
    get status() { return status; },
    get readOnly() { return Boolean(ended) || role === "viewer"; },
    text: () => ytext.toString(),
    // An explicit save point (`doc.save`): resolves with the new version number.
    save() {
      return new Promise((resolve, reject) => {
        if (ended || role === "viewer") { reject(new Error("This editor is read-only.")); return; }
        flushUpdates(); // what was typed goes first: frames are handled in order
        const sent = transport.send({ type: "doc.save", id: frameId("v"), document: documentId }, (answer) => {
          if (answer.type === "doc.saved") resolve(answer.version);
          else reject(new Error(answer.message || answer.code));
        });
        if (!sent) reject(new Error("Offline: the version can be saved once the connection is back."));
      });
    },
    // A role change seen elsewhere (the documents stream): a viewer made editor, or the reverse.
    setRole(next) {
      if (next !== role && !ended) changeRole(next);
    },
    destroy() {
      if (destroyed) return;
      flushUpdates();
      if (synced && transport.connected) { // tell the others this cursor is gone
        removeAwarenessStates(awareness, [ydoc.clientID], "local");
        lastAwarenessSent = 0;
        sendAwareness();
      }
      destroyed = true;
      clearTimeout(updateTimer);
      clearTimeout(awarenessTimer);
      clearTimeout(retryTimer);
      clearTimeout(busyTimer);
      unwatch();
      subscription.close(); // nothing is sent if the server already ended it
      view.destroy();
      undoManager.destroy();
      awareness.destroy();
      ydoc.destroy();
      colors.destroy();
    },
  };
}
