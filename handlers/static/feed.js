// The reference client of the websocket protocol (docs/protocol.md), a module of its own: the
// dashboard imports it like any page would (docs/clients.md). It needs a WebSocket global only.
//
//   import { Feed } from "./feed.js";
//   const feed = new Feed({ token, url: "wss://example.com/ws", onStatus, onUnauthorized, onReady });
//   feed.subscribe("docs", "documents", {}, { event(frame) {}, live() {}, reset() {}, expired() {}, error(frame) {} });
//   feed.start();
//   await feed.chat(roomId, "hello", crypto.randomUUID());   // resolves with the stored message, once
//   feed.typing(roomId);                                      // "typing" to the room's other members
//   feed.setPresence(documentId, "editing");                  // announced again after every reconnect
//   feed.subscribe("d", "doc", () => ({ id, vector }), hooks); // params asked again at every (re)subscribe
//   feed.request({ type: "doc.save", id: "v1", document }, (answer) => {});   // now or never
//   const unwatch = feed.watch((live) => {});                 // true once authenticated, false on a drop
//   feed.unsubscribe("docs"); feed.stop();
//
// `url` defaults to this page's origin + /ws. `onStatus(state, delayMs)`: connecting, live,
// reconnecting (with the delay), offline (signed out, or the browser has no network: the feed tries
// again when it says it is back online). `onUnauthorized()`: the server closed with 4001 (sign in
// again). `params` may be a function, called at every (re)subscribe (the `doc` stream sends the
// client's current state vector each time). Hooks per subscription: `event(frame)` each event,
// `live()` once it is live, `reset()` before a stream that is not replayed (presence, online, doc)
// is subscribed again, `expired()` when too much was missed to replay (reload by REST: the feed then
// follows from now), `error(frame)` when it is refused.
// `chat()` rejects if the feed is stopped or the session ends before the message is acknowledged.
// `request(frame, reply)` sends any frame if the feed is live and returns true, or returns false and
// keeps nothing (for frames a reconnect makes useless, like a co-editor's updates, which its next sync
// sends anyway); `reply(answer)` gets the frame that answers the frame's `id` (an `error`, or e.g.
// `doc.ack`), or `{type: "error", code: "unavailable"}` if the connection drops before it comes.
// `watch(listener)` calls `listener(true)` once the feed is live and `listener(false)` when it drops.
//
// One connection carries every subscription. Each subscription keeps the cursor of the last event
// it saw; after any drop (network, a server restart, a 4008 for being slow) the feed reconnects with
// exponential backoff and resubscribes with `since` = that cursor, so the server replays exactly
// what was missed: nothing lost, nothing twice. State streams (presence, online) send their current
// state on every subscribe instead; their `reset` hook lets a view clear what it showed.

const REPLAYABLE = new Set(["contacts", "documents", "room", "orders"]);
const MAX_DELAY_MS = 15000;

function defaultUrl() {
  const scheme = globalThis.location?.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${globalThis.location?.host}/ws`;
}

export class Feed {
  constructor({ token, url = defaultUrl(), onStatus = () => {}, onUnauthorized = () => {}, onReady = () => {} }) {
    this.token = token;
    this.url = url;
    this.onStatus = onStatus;
    this.onUnauthorized = onUnauthorized;
    this.onReady = onReady;
    this.subs = new Map(); // id -> {stream, params, cursor, on: {event, live, reset, expired}}
    this.presence = new Map(); // document id -> "viewing" | "editing": announced again after a reconnect
    this.pending = new Map(); // client_id -> {frame, resolve, reject}: chat messages not acked yet
    this.replies = new Map(); // frame id -> reply(answer): request() frames waiting for their answer
    this.watchers = new Set(); // watch() listeners
    this.attempt = 0;
    this.ws = null;
    this.ready = false;
    this.stopped = false;
    this.timer = null;
    this.reconnectNow = () => { if (!this.ws && !this.stopped) this.open(); };
    // A browser that says it lost the network: the socket is closed now (a dead connection can take a
    // minute to notice) and nothing is tried until it says it is back.
    this.dropNow = () => {
      const ws = this.ws;
      if (!ws || this.stopped) return;
      this.closed(ws, 1006);
      ws.close();
    };
    globalThis.addEventListener?.("online", this.reconnectNow); // a browser back online: now, not at backoff's end
    globalThis.addEventListener?.("offline", this.dropNow);
  }

  start() { this.open(); }

  stop() {
    this.stopped = true;
    this.failPending("the feed was stopped");
    this.failReplies("the feed was stopped");
    clearTimeout(this.timer);
    globalThis.removeEventListener?.("online", this.reconnectNow);
    globalThis.removeEventListener?.("offline", this.dropNow);
    if (this.ws) this.ws.close(1000, "signed out");
  }

  subscribe(id, stream, params, on) {
    const sub = { stream, params, cursor: null, on };
    this.subs.set(id, sub);
    if (this.ready) this.sendSubscribe(id, sub);
  }

  unsubscribe(id) {
    if (this.subs.delete(id) && this.ready) this.send({ type: "unsubscribe", id });
  }

  // Forgets a subscription the server already ended (a `doc` stream's `leave`): no frame is sent.
  forget(id) { this.subs.delete(id); }

  // Sends `frame` now if the feed is live; never queued (see the top of this file).
  request(frame, reply) {
    if (!this.ready || !this.send(frame)) return false;
    if (reply && frame.id) this.replies.set(frame.id, reply);
    return true;
  }

  watch(listener) {
    this.watchers.add(listener);
    return () => this.watchers.delete(listener);
  }

  setPresence(document, state) {
    if (state) this.presence.set(document, state);
    else this.presence.delete(document);
    if (this.ready) this.send({ type: "presence", document, state: state || null });
  }

  // Sends a chat message; resolves with the stored message once acked. Until then it is sent
  // again after every reconnect with the same client_id, which the server stores only once.
  chat(room, text, clientId = crypto.randomUUID()) {
    return new Promise((resolve, reject) => {
      if (this.stopped) return reject(new Error("the feed is stopped"));
      const frame = { type: "chat.send", room, text, client_id: clientId };
      this.pending.set(clientId, { frame, resolve, reject });
      if (this.ready) this.send(frame);
    });
  }

  typing(room) { if (this.ready) this.send({ type: "chat.typing", room }); }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  // --- connection life cycle -------------------------------------------------------------------

  open() {
    clearTimeout(this.timer);
    if (globalThis.navigator?.onLine === false) { // the "online" event calls this again
      this.onStatus("offline");
      return;
    }
    this.onStatus("connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: this.token }));
    ws.onmessage = (message) => this.receive(JSON.parse(message.data));
    ws.onclose = (closed) => this.closed(ws, closed.code);
  }

  closed(ws, code) {
    if (this.ws !== ws) return;
    this.ws = null;
    const wasReady = this.ready;
    this.ready = false;
    this.failReplies("the connection dropped");
    if (wasReady) this.tell(false);
    if (this.stopped) return;
    if (code === 4001) {
      this.failPending("the session ended: sign in again");
      this.onStatus("offline");
      this.onUnauthorized();
      return;
    }
    if (globalThis.navigator?.onLine === false) { // the "online" event reconnects
      this.onStatus("offline");
      return;
    }
    // Full jitter keeps a restarted server from being hit by every client in the same instant.
    const delay = Math.min(MAX_DELAY_MS, 500 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt += 1;
    this.onStatus("reconnecting", delay);
    this.timer = setTimeout(() => this.open(), delay);
  }

  receive(frame) {
    switch (frame.type) {
      case "ready": return this.resume(frame.user);
      case "event": return this.event(frame);
      case "subscribed": return this.live(frame);
      case "ack": return this.acked(frame.client_id, frame.message, null);
      case "error": return this.refused(frame);
      default: return this.answered(frame);
    }
  }

  // A frame that answers a request() frame (doc.ack, doc.saved, ...).
  answered(frame) {
    const reply = frame.id !== undefined && this.replies.get(frame.id);
    if (!reply) return;
    this.replies.delete(frame.id);
    reply(frame);
  }

  failReplies(reason) {
    const replies = [...this.replies.values()];
    this.replies.clear();
    for (const reply of replies) reply({ type: "error", code: "unavailable", message: reason });
  }

  tell(live) {
    for (const listener of [...this.watchers]) listener(live);
  }

  resume(user) {
    this.attempt = 0;
    this.ready = true;
    this.onStatus("live");
    this.onReady(user);
    this.tell(true);
    for (const [id, sub] of this.subs) this.sendSubscribe(id, sub);
    for (const [document, state] of this.presence) this.send({ type: "presence", document, state });
    for (const { frame } of this.pending.values()) this.send(frame);
  }

  sendSubscribe(id, sub) {
    const frame = { type: "subscribe", id, stream: sub.stream };
    const params = typeof sub.params === "function" ? sub.params() : sub.params;
    if (params) frame.params = params;
    if (sub.cursor && REPLAYABLE.has(sub.stream)) frame.since = sub.cursor;
    else sub.on.reset?.();
    this.send(frame);
  }

  live(frame) {
    const sub = this.subs.get(frame.id);
    if (!sub) return;
    // Everything before this cursor has been given to the subscription: resume from here even if
    // no event comes before the next drop.
    if (frame.cursor) sub.cursor = frame.cursor;
    sub.on.live?.();
  }

  event(frame) {
    const sub = this.subs.get(frame.sub);
    if (!sub) return;
    sub.cursor = frame.cursor;
    sub.on.event(frame);
  }

  failPending(reason) {
    for (const clientId of [...this.pending.keys()]) this.acked(clientId, null, { code: "unavailable", message: reason });
  }

  acked(clientId, message, error) {
    const pending = this.pending.get(clientId);
    if (!pending) return;
    this.pending.delete(clientId);
    if (error) pending.reject(error);
    else pending.resolve(message);
  }

  refused(frame) {
    if (frame.client_id) return this.acked(frame.client_id, null, frame);
    if (frame.id !== undefined && this.replies.has(frame.id)) return this.answered(frame);
    const sub = frame.id && this.subs.get(frame.id);
    if (!sub) return console.warn("refused:", frame.code, frame.message);
    if (frame.code === "cursor_expired") {
      // Too much was missed to replay: the view reloads its state over REST, then goes live again.
      sub.cursor = null;
      sub.on.expired?.();
      return this.sendSubscribe(frame.id, sub);
    }
    this.subs.delete(frame.id);
    sub.on.error?.(frame);
  }
}
