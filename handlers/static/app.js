// The dashboard: documents with live presence, an editor that never overwrites silently, chat, orders.
// Everything it shows comes from the public REST API and one websocket (feed.js); text from the
// server is only ever set as textContent.

import { api, ApiError, explain, hooks, session } from "./api.js";
import { Feed } from "./feed.js";

const $ = (selector, root = document) => root.querySelector(selector);
const TYPING_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 6000;
const LIST_FIELDS = ["title", "slug", "abstract", "tags", "version", "owner", "collaborators", "created_at", "updated_at",
  "updated_by"];
// Braintree's Drop-in, from Braintree's CDN (the page's CSP allows that host only when the server says
// Drop-in is on: sandbox or production credentials).
const DROP_IN = "https://js.braintreegateway.com/web/dropin/1.43.0/js/dropin.min.js";
const NONCES = [
  ["fake-valid-nonce", "Visa ending 1111: approved"],
  ["fake-processor-declined-visa-nonce", "Visa: declined by the bank"],
  ["fake-processor-failure-visa-nonce", "Visa: processor failure"],
  ["fake-gateway-rejected-fraud-nonce", "Card flagged as fraud"],
];

// A list kept by REST pages plus live events. Events that arrive while the first page loads are
// applied after it, in order, so the newest state wins either way.
class Collection {
  constructor(onChange) {
    this.items = new Map();
    this.loaded = false;
    this.early = [];
    this.onChange = onChange;
  }
  load(items) {
    for (const item of items) this.items.set(item.id, item);
    this.loaded = true;
    for (const [apply, event] of this.early.splice(0)) apply(event);
    this.onChange();
  }
  on(apply) {
    return (event) => {
      if (!this.loaded) this.early.push([apply, event]);
      else { apply(event); this.onChange(); }
    };
  }
  reset() {
    this.items.clear();
    this.loaded = false;
    this.early = [];
    this.loading = false;
    this.generation = (this.generation || 0) + 1; // a load started before a reset is dropped
  }
}

const state = {
  me: null,
  feed: null,
  docs: new Collection(() => view.refresh?.("docs")),
  rooms: new Collection(() => { renderUnreadTotal(); view.refresh?.("rooms"); }),
  orders: new Collection(() => view.refresh?.("orders")),
  presence: new Map(), // document id -> {viewing: [user], editing: [user]}
  online: null,
};
let view = {}; // the current view: {leave(), refresh(kind)}

// --- start, sign in, sign out ------------------------------------------------------------------

hooks.onUnauthorized = () => signedOut("Your session ended; sign in again.");

async function boot() {
  setUpSignin();
  $("#signout").addEventListener("click", signOut);
  $("#verify-banner [data-resend]").addEventListener("click", resendVerification);
  $("#notify").addEventListener("click", () => Notification.requestPermission().then(showNotifyButton));
  window.addEventListener("hashchange", () => {
    const link = takeMailLink();
    if (link) followMailLink(link);
  });
  const link = takeMailLink();
  if (session.token && link?.kind !== "reset") {
    try {
      const { data } = await api("GET", "/auth/me");
      start(data.user);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) return showSignin(explain(error));
      session.token = null;
    }
  }
  if (link) followMailLink(link);
  else if (!state.me) showSignin();
}

function setUpSignin() {
  const form = $("#signin-form");
  let registering = false;
  $("#signin-toggle").addEventListener("click", () => {
    registering = !registering;
    $("#name-field").hidden = !registering;
    $("#signin-submit").textContent = registering ? "Create account" : "Sign in";
    $("#signin-toggle").textContent = registering ? "I have an account" : "Create an account instead";
    form.password.autocomplete = registering ? "new-password" : "current-password";
  });
  const forgot = $("#forgot-form");
  $("#forgot-toggle").addEventListener("click", () => {
    form.hidden = true;
    forgot.hidden = false;
    forgot.email.value = form.email.value;
    forgot.email.focus();
  });
  $("[data-back]", forgot).addEventListener("click", () => showSignin());
  forgot.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    $("#signin-error").textContent = "";
    try {
      await api("POST", "/auth/password/forgot", { body: { email: forgot.email.value.trim() } });
      showSignin("", "If an account has this address, a letter with a reset link is on its way.");
    } catch (error) {
      $("#signin-error").textContent = explain(error);
    }
  });
  const reset = $("#reset-form");
  reset.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    $("#signin-error").textContent = "";
    try {
      await api("POST", "/auth/password/reset", { body: { token: reset.dataset.code, password: reset.password.value } });
      reset.reset();
      session.token = null;
      showSignin("", "Your password is changed and every session ended. Sign in with the new one.");
    } catch (error) {
      $("#signin-error").textContent = explain(error);
    }
  });
  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    $("#signin-error").textContent = "";
    const body = { email: form.email.value.trim(), password: form.password.value };
    if (registering) body.name = form.name.value.trim();
    try {
      const { data } = await api("POST", registering ? "/auth/register" : "/auth/login", { body });
      session.token = data.token;
      form.reset();
      start(data.user);
    } catch (error) {
      $("#signin-error").textContent = explain(error);
    }
  });
}

function showSignin(message = "", notice = "") {
  $("#shell").hidden = true;
  $("#signin").hidden = false;
  $("#signin-form").hidden = false;
  $("#forgot-form").hidden = true;
  $("#reset-form").hidden = true;
  $("#signin-error").textContent = message;
  $("#signin-notice").textContent = notice;
  $("#signin-form").email.focus();
}

// --- links from letters: #verify=<code>, #reset=<code> ----------------------------------------

const MAIL_LINK = /^#(verify|reset)=(.+)$/;
const VERIFY_LATER = "murmuration.verify";

// A link from a letter (a new tab, or this one): its code is used once and kept out of the history.
// A reset needs no sign-in (it proves the address). A verification is made signed in, as the account
// it is for: the owner of an address someone else registered cannot sign in to that account, so
// opening the link does not hand the address to the squatter; the page points them to a reset.
function takeMailLink() {
  const [, kind, code] = location.hash.match(MAIL_LINK) || [];
  if (!kind) return null;
  history.replaceState(null, "", location.pathname);
  return { kind, code };
}

function followMailLink(link) {
  if (link.kind === "reset") {
    if (state.me) signedOut(); // a reset ends every session anyway
    showSignin();
    $("#signin-form").hidden = true;
    $("#reset-form").hidden = false;
    $("#reset-form").dataset.code = link.code;
    $("#reset-form").password.focus();
    return;
  }
  if (state.me) { verifyCode(link.code); return; }
  sessionStorage.setItem(VERIFY_LATER, link.code);
  showSignin("", "Sign in to the account to verify its address. You did not create it? " +
    "Choose \u201cForgot your password?\u201d: resetting takes the account over.");
}

async function verifyCode(code) {
  sessionStorage.removeItem(VERIFY_LATER);
  try {
    const { data } = await api("POST", "/auth/verify", { body: { token: code } });
    state.me = data.user;
    showVerification(data.user);
    toast("Your address is verified.");
  } catch (error) {
    toast(explain(error));
  }
}

function toast(text) {
  const shown = el("p", { class: "toast", role: "status" }, text);
  $("#toasts").append(shown);
  setTimeout(() => shown.remove(), 8000);
}

async function resendVerification() {
  try {
    await api("POST", "/auth/verify/resend");
    toast(`A new letter is on its way to ${state.me.email}.`);
  } catch (error) {
    toast(explain(error));
  }
}

function showVerification(user) {
  const banner = $("#verify-banner");
  banner.hidden = user.email_verified;
  $("[data-email]", banner).textContent = user.email;
}

function start(user) {
  state.me = user;
  $("#signin").hidden = true;
  $("#shell").hidden = false;
  $("#me").textContent = user.name;
  showVerification(user);
  const later = sessionStorage.getItem(VERIFY_LATER);
  if (later) verifyCode(later);
  showNotifyButton();
  const feed = new Feed({
    token: session.token,
    onStatus: showStatus,
    onUnauthorized: () => signedOut("Your session ended; sign in again."),
    onReady: loadMissing, // after every (re)connect: a list whose first load failed is loaded again
  });
  state.feed = feed;
  feed.subscribe("online", "online", null, { event: (e) => { $("#online").textContent = `online: ${e.data.count}`; } });
  // The list and the document view need no body: it is the live editor's (the `doc` stream), and
  // without it here a keystroke's update does not carry the whole text to every open page.
  feed.subscribe("docs", "documents", { fields: LIST_FIELDS }, {
    event: state.docs.on(documentEvent),
    expired: () => reload(state.docs),
  });
  feed.subscribe("presence", "presence", null, {
    event: (e) => { state.presence.set(e.id, e.data); view.refresh?.("presence"); },
    reset: () => { state.presence.clear(); view.refresh?.("presence"); },
  });
  feed.subscribe("rooms", "room", null, {
    event: state.rooms.on(roomEvent),
    expired: () => reload(state.rooms),
  });
  feed.subscribe("orders", "orders", null, {
    event: state.orders.on((e) => { if (e.data) state.orders.items.set(e.id, e.data); }),
    expired: () => reload(state.orders),
  });
  feed.start();
  window.addEventListener("hashchange", route);
  route();
}

// Too much was missed to replay: the list is loaded again over REST.
function reload(collection) {
  collection.reset();
  loadMissing();
}

function loadMissing() {
  for (const [collection, path] of [[state.docs, "/documents"], [state.rooms, "/rooms"], [state.orders, "/orders"]]) {
    if (collection.loaded || collection.loading) continue;
    loadAll(collection, path).catch((error) => {
      if (path === "/orders" && error.status === 503) collection.load([]); // payments are not configured
    });
  }
}

async function loadAll(collection, path) {
  collection.reset();
  collection.loading = true;
  try {
    await loadPages(collection, path);
  } finally {
    collection.loading = false;
  }
}

async function loadPages(collection, path) {
  const generation = collection.generation;
  const items = [];
  let after = null;
  do {
    const { data } = await api("GET", `${path}?limit=100${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    items.push(...data.items);
    after = data.next;
  } while (after && items.length < 500);
  if (collection.generation === generation) collection.load(items);
}

async function signOut() {
  try { await api("POST", "/auth/logout"); } catch { /* the token is dropped either way */ }
  signedOut();
}

function signedOut(message = "") {
  view.leave?.();
  view = {};
  state.me = null;
  state.feed?.stop();
  state.feed = null;
  session.token = null;
  for (const collection of [state.docs, state.rooms, state.orders]) collection.reset();
  state.presence.clear();
  window.removeEventListener("hashchange", route);
  $("#main").replaceChildren();
  showSignin(message);
}

function showStatus(status, delay) {
  const element = $("#status");
  element.dataset.state = status;
  element.textContent = status === "live" ? "live"
    : status === "reconnecting" ? `reconnecting in ${Math.ceil(delay / 1000)} s…`
    : status === "offline" ? "offline" : "connecting…";
}

// --- routing -------------------------------------------------------------------------------------

function route() {
  if (MAIL_LINK.test(location.hash)) return; // the hashchange listener's (followMailLink)
  view.leave?.();
  const [, section = "documents", id] = location.hash.split("/");
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const main = $("#main");
  if (section === "documents" && id) view = documentView(main, id);
  else if (section === "rooms") view = roomsView(main, id || null);
  else if (section === "orders") view = ordersView(main);
  else if (section === "account") view = accountView(main);
  else view = documentsView(main);
}

function mount(main, template) {
  main.replaceChildren($(`#${template}`).content.cloneNode(true));
  main.focus({ preventScroll: true });
}

function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") element.className = value;
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (value !== false && value != null) element.setAttribute(key, value === true ? "" : value);
  }
  element.append(...children.filter((child) => child != null && child !== false));
  return element;
}

const names = (users) => users.map((user) => user.name).join(", ");

function presenceBadges(documentId) {
  const presence = state.presence.get(documentId);
  const badges = [];
  if (presence?.viewing?.length) badges.push(el("span", { class: "badge viewing" }, `viewing: ${names(presence.viewing)}`));
  if (presence?.editing?.length) badges.push(el("span", { class: "badge editing" }, `editing: ${names(presence.editing)}`));
  return badges;
}

// --- documents -------------------------------------------------------------------------------

function documentEvent(event) {
  const known = state.docs.items.get(event.id);
  if (event.op === "delete" || event.op === "leave") {
    state.docs.items.delete(event.id);
    return;
  }
  if (known && event.data.version < known.version) return; // an older version than shown
  state.docs.items.set(event.id, event.data);
  const savedByOther = event.data.updated_by && event.data.updated_by.id !== state.me.id;
  const open = location.hash === `#/documents/${event.id}`; // its view already shows the save
  if (event.op === "update" && known && event.data.version > known.version && savedByOther && !open) {
    notify(`${event.data.updated_by.name} saved “${event.data.title}”`, `version ${event.data.version}`,
      `#/documents/${event.id}`);
  }
  if (event.op === "enter") notify(`${event.data.owner.name} shared “${event.data.title}” with you`, "", `#/documents/${event.id}`);
}

function documentsView(main) {
  mount(main, "documents-view");
  const list = $("[data-list]", main);
  const render = () => {
    const docs = [...state.docs.items.values()].sort((a, b) => b.updated_at.localeCompare(a.updated_at));
    list.replaceChildren(...docs.map((doc) => el("li", { "data-doc": doc.id },
      el("a", { href: `#/documents/${doc.id}` }, doc.title),
      el("span", { class: "muted" }, ` v${doc.version} · ${doc.owner.id === state.me.id ? "yours" : `by ${doc.owner.name}`}`),
      doc.collaborators.length ? el("span", { class: "muted" }, ` · with ${names(doc.collaborators)}`) : null,
      el("span", { class: "badges" }, ...presenceBadges(doc.id)),
    )));
    if (!docs.length) list.append(el("li", { class: "muted" }, state.docs.loaded ? "No documents yet." : "Loading…"));
  };
  $("[data-form=create]", main).addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const form = submitted.target;
    try {
      const { data } = await api("POST", "/documents", { body: { title: form.title.value.trim() } });
      state.docs.items.set(data.id, data);
      location.hash = `#/documents/${data.id}`;
    } catch (error) {
      $("[data-error]", main).textContent = explain(error);
    }
  });
  render();
  return { refresh: (kind) => { if (kind === "docs" || kind === "presence") render(); } };
}

// The `doc` stream's transport for the live editor (editor.js): the page's one websocket (feed.js).
// Each mount has its own subscription id, so nothing meant for an earlier one reaches it.
let docSubscriptions = 0;
function docTransport(feed, documentId) {
  docSubscriptions += 1;
  const subId = `doc-${docSubscriptions}-${documentId}`;
  return {
    get connected() { return feed.ready; },
    subscribe(params, on) {
      feed.subscribe(subId, "doc", params, on);
      return {
        close: () => feed.unsubscribe(subId),
        drop: () => feed.forget(subId),
        again: () => { feed.unsubscribe(subId); feed.subscribe(subId, "doc", params, on); },
      };
    },
    send: (frame, reply) => feed.request(frame, reply),
    watch: (listener) => feed.watch(listener),
  };
}

const LIVE_STATUS = {
  online: "live",
  offline: "offline — your typing will be merged when the connection returns",
  synced: "synced",
};

// One document: the body is a live co-editor (editor.js, the `doc` stream: every keystroke is merged,
// nothing to save); title and abstract are saved with Save, `If-Match` the ETag they were read at
// (opaque: `"3"` or `"3.17"`), and a save that lost the race shows theirs and mine.
function documentView(main, id) {
  mount(main, "document-view");
  const form = $("[data-form=edit]", main);
  const fields = ["title", "abstract"];
  const labels = { title: "Title", abstract: "Abstract" };
  let base = null; // the document as last read or saved: what title and abstract started from
  let etag = null; // its ETag, as the server sent it
  let gone = false;
  let left = false;
  let editor = null;
  let announced = false; // presence sent by this view (only when the live editor could not start)
  const feed = state.feed;

  const role = (doc) => doc.owner.id === state.me.id ? "owner"
    : doc.collaborators.find((c) => c.id === state.me.id)?.role || "viewer";
  const changed = () => fields.filter((field) => base && form[field].value !== (base[field] || ""));
  const dirty = () => changed().length > 0;
  const mine = (names = fields) => Object.fromEntries(names.map((field) => [field, form[field].value]));

  function fill(doc, tag) {
    base = doc;
    if (tag) etag = tag;
    for (const field of fields) form[field].value = doc[field] || "";
    $("[data-newer]", main).hidden = true;
    showMeta(doc);
  }

  function showMeta(doc) {
    $("[data-title]", main).textContent = doc.title;
    $("[data-version]", main).textContent = `version ${doc.version}`;
    $("[data-meta]", main).textContent = `Owner ${doc.owner.name} · last saved by ${doc.updated_by?.name || doc.owner.name} ` +
      `at ${new Date(doc.updated_at).toLocaleString()}`;
    const editable = role(doc) !== "viewer" && !gone;
    for (const field of fields) form[field].readOnly = !editable;
    $("[data-save]", main).hidden = !editable;
    $("[data-save-version]", main).hidden = !editable || !editor || editor.readOnly;
    editor?.setRole(role(doc));
    renderPeople(doc);
  }

  function renderPeople(doc) {
    const owner = role(doc) === "owner";
    const people = [el("li", {}, `${doc.owner.name} (owner)`)];
    for (const person of doc.collaborators) {
      const removable = owner || person.id === state.me.id;
      people.push(el("li", {}, `${person.name} (${person.role})`, removable
        ? el("button", { type: "button", class: "link", onclick: () => unshare(person) },
          person.id === state.me.id ? "Leave" : `Remove ${person.name}`)
        : null));
    }
    $("[data-people]", main).replaceChildren(...people);
    $("[data-form=share]", main).hidden = !owner;
  }

  function renderPresence() {
    const badges = presenceBadges(id);
    $("[data-presence]", main).replaceChildren(...(badges.length ? badges : [el("span", { class: "muted" }, "Nobody else is here.")]));
  }

  async function unshare(person) {
    try {
      await api("DELETE", `/documents/${id}/collaborators/${person.id}`);
    } catch (error) {
      $("[data-share-error]", main).textContent = explain(error);
    }
  }

  // --- the live body ---------------------------------------------------------------------------

  function showLive(status) {
    const line = $("[data-live-status]", main);
    line.dataset.state = status;
    line.textContent = LIVE_STATUS[status] || status;
  }

  function showReadOnly(reason) {
    const box = $("[data-readonly]", main);
    box.textContent = reason || "";
    box.hidden = !reason;
    $("[data-editor-note]", main).hidden = Boolean(reason);
    $("[data-save-version]", main).hidden = Boolean(reason) || !base || role(base) === "viewer" || gone;
  }

  function startEditor(doc) {
    import("./editor.js").then(({ mountEditor }) => {
      if (left) return;
      const parent = $("[data-editor]", main);
      parent.replaceChildren();
      editor = mountEditor(parent, {
        document: id,
        user: state.me,
        role: role(doc),
        label: "Body",
        transport: docTransport(feed, id),
        onStatus: showLive,
        onReadOnly: showReadOnly,
        onError: (message) => { $("[data-editor-error]", main).textContent = message; },
      });
      showMeta(base);
    }).catch((error) => {
      $("[data-editor]", main).replaceChildren(el("p", { class: "error" }, `The live editor could not be loaded: ${error.message}`));
      if (!left) { announced = true; feed.setPresence(id, "viewing"); } // what the doc stream would have said
    });
  }

  $("[data-save-version]", main).addEventListener("click", async () => {
    const button = $("[data-save-version]", main);
    $("[data-editor-error]", main).textContent = "";
    button.disabled = true;
    try {
      const version = await editor.save();
      $("[data-saved]", main).textContent = `Saved version ${version}.`;
    } catch (error) {
      $("[data-editor-error]", main).textContent = `Not saved: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });

  // --- title and abstract: Save with If-Match --------------------------------------------------

  // `tries`: a 412 that only the body's save points caused (title and abstract as we read them) is
  // retried with the current ETag, as nothing of anyone's would be overwritten.
  async function save(fieldsToSave, tag, tries = 3) {
    const error = $("[data-error]", main);
    error.textContent = "";
    try {
      const { data, headers } = await api("PATCH", `/documents/${id}`, { body: fieldsToSave, headers: { "If-Match": tag } });
      fill(data, headers.get("ETag"));
      state.docs.items.set(id, { ...state.docs.items.get(id), ...data });
      $("[data-conflict]", main).hidden = true;
      $("[data-saved]", main).textContent = `Saved version ${data.version}.`;
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 412) return conflict(fieldsToSave, tries);
      error.textContent = explain(failure);
    }
    return undefined;
  }

  async function conflict(ours, tries) {
    const { data: theirs, headers } = await api("GET", `/documents/${id}`);
    const theirTag = headers.get("ETag");
    const names = Object.keys(ours);
    const moved = names.filter((field) => (theirs[field] || "") !== (base[field] || ""));
    if (!moved.length && tries > 1) return save(ours, theirTag, tries - 1);
    const show = (doc) => names.map((field) => `${labels[field]}: ${doc[field] || ""}`).join("\n");
    const box = $("[data-conflict]", main);
    $("[data-conflict-who]", main).textContent = `${theirs.updated_by?.name || "Someone"} saved version ${theirs.version} ` +
      `while you were editing version ${base.version}. Nothing is lost: choose what to keep.`;
    $("[data-theirs]", main).textContent = show(theirs);
    $("[data-mine]", main).textContent = show(ours);
    box.hidden = false;
    $("[data-keep-mine]", box).onclick = () => save(ours, theirTag);
    $("[data-take-theirs]", box).onclick = () => { fill(theirs, theirTag); box.hidden = true; };
    $("[data-merge]", box).onclick = () => {
      fill(theirs, theirTag);
      for (const field of names) {
        const theirText = theirs[field] || "";
        form[field].value = ours[field] === theirText ? theirText : `${theirText} / ${ours[field]}`;
      }
      box.hidden = true;
      form[names.find((field) => form[field].value !== (theirs[field] || "")) || names[0]].focus();
    };
    $("[data-keep-mine]", box).focus();
    return undefined;
  }

  form.addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    if (!base || gone) return;
    const edited = changed();
    if (!edited.length) { $("[data-saved]", main).textContent = "Title and abstract are unchanged."; return; }
    save(mine(edited), etag);
  });
  form.addEventListener("input", () => { $("[data-saved]", main).textContent = dirty() ? "Unsaved changes." : ""; });
  $("[data-form=share]", main).addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const share = submitted.target;
    $("[data-share-error]", main).textContent = "";
    try {
      const email = share.email.value.trim();
      const { status } = await api("POST", `/documents/${id}/collaborators`, { body: { email, role: share.role.value } });
      share.reset();
      if (status === 202) toast(`${email} is invited: they get access once they verify that address (see Account).`);
    } catch (error) {
      $("[data-share-error]", main).textContent = explain(error);
    }
  });

  // A save seen on the documents stream. The body is the live editor's; title and abstract follow at
  // once unless edited here, and a banner says when someone else changed them meanwhile.
  function updated(doc) {
    if (!base || gone) return;
    if (doc.version <= base.version) {
      if (doc.version === base.version) { base = { ...base, ...doc }; showMeta(base); }
      return;
    }
    if (!dirty()) { fill({ ...base, ...doc }); return; }
    const theirs = fields.filter((field) => (doc[field] || "") !== (base[field] || ""));
    if (!theirs.length) { base = { ...base, ...doc }; showMeta(base); return; } // a save point of the body
    const newer = $("[data-newer]", main);
    newer.textContent = `${doc.updated_by?.name || "Someone"} saved version ${doc.version} while you edit; ` +
      "saving will show both versions so you can choose.";
    newer.hidden = false;
    showMeta(base);
  }

  function lost(message) {
    gone = true;
    for (const field of fields) form[field].readOnly = true;
    $("[data-save]", main).hidden = true;
    $("[data-save-version]", main).hidden = true;
    const newer = $("[data-newer]", main);
    newer.textContent = message;
    newer.hidden = false;
  }

  api("GET", `/documents/${id}`).then(({ data, headers }) => {
    if (left) return;
    fill(data, headers.get("ETag"));
    startEditor(data); // its `doc` subscription puts this connection on the presence: editing, or viewing for a viewer
  }).catch((error) => {
    lost(error.status === 404 ? "This document does not exist or is not shared with you." : explain(error));
    $("[data-editor]", main).replaceChildren();
  });
  renderPresence();

  return {
    leave: () => {
      left = true;
      editor?.destroy(); // unsubscribing takes this connection off the presence
      if (announced) feed.setPresence(id, null);
    },
    refresh: (kind) => {
      if (kind === "presence") renderPresence();
      if (kind !== "docs" || !base) return;
      const doc = state.docs.items.get(id);
      if (doc) updated(doc);
      else if (!gone) lost("This document was deleted, or you no longer have access to it.");
    },
  };
}

// --- notifications -------------------------------------------------------------------------------

function showNotifyButton() {
  $("#notify").hidden = !("Notification" in window) || Notification.permission !== "default";
}

function notify(title, body, href) {
  const open = () => { window.focus(); location.hash = href; };
  const toast = el("button", { type: "button", class: "toast", onclick: () => { toast.remove(); open(); } },
    el("strong", {}, title), body ? el("span", {}, ` ${body}`) : null);
  $("#toasts").append(toast);
  setTimeout(() => toast.remove(), 10000);
  if ("Notification" in window && Notification.permission === "granted") {
    try {
      const notification = new Notification(title, { body, tag: href });
      notification.onclick = () => { notification.close(); open(); };
    } catch (error) { // some browsers only allow notifications from a service worker: the toast stays
      console.warn("notification not shown:", error);
    }
  }
}

// --- chat ----------------------------------------------------------------------------------------

const chat = { open: null, typing: new Map() }; // typing: user id -> {name, until}

function roomEvent(event) {
  if (event.op === "leave") { state.rooms.items.delete(event.id); return; }
  if (event.op === "enter") {
    state.rooms.items.set(event.id, { unread: 0, last_message: null, ...state.rooms.items.get(event.id), ...event.data });
    return;
  }
  if (event.op === "typing") {
    chat.typing.set(`${event.data.room}:${event.data.user.id}`, { ...event.data, until: Date.now() + TYPING_SHOWN_MS });
    setTimeout(() => view.refresh?.("typing"), TYPING_SHOWN_MS + 50);
    view.refresh?.("typing");
    return;
  }
  const message = event.data;
  const room = state.rooms.items.get(message.room);
  if (!room) return;
  if (room.last_message && room.last_message.id === message.id) return; // seen already
  chat.typing.delete(`${message.room}:${message.author.id}`);
  room.last_message = message;
  if (message.author.id !== state.me.id && chat.open !== message.room) room.unread += 1;
  view.message?.(message);
}

// The server counts unread messages up to 100 (`unread_capped` says there are more).
function unreadText(room) {
  return room.unread_capped || room.unread > 100 ? "100+" : String(room.unread);
}

function renderUnreadTotal() {
  const total = [...state.rooms.items.values()].reduce((sum, room) => sum + (room.unread || 0), 0);
  const badge = $("#unread-total");
  badge.hidden = total === 0;
  badge.textContent = total;
  badge.setAttribute("aria-label", `${total} unread`);
}

function roomsView(main, roomId) {
  mount(main, "rooms-view");
  chat.open = roomId;
  const list = $("[data-rooms]", main);
  const messages = $("[data-messages]", main);
  const shown = new Set(); // message ids and client ids on screen: nothing twice
  let older = null;
  let lastTyping = 0;

  const renderRooms = () => {
    const rooms = [...state.rooms.items.values()].sort((a, b) =>
      (b.last_message?.created_at || b.created_at).localeCompare(a.last_message?.created_at || a.created_at));
    list.replaceChildren(...rooms.map((room) => el("li", { "data-room": room.id },
      el("a", { href: `#/rooms/${room.id}`, "aria-current": room.id === roomId ? "page" : false }, room.name),
      room.unread ? el("span", { class: "badge", "aria-label": `${unreadText(room)} unread` }, unreadText(room)) : null,
      room.last_message ? el("span", { class: "muted ellipsis" }, ` ${room.last_message.author.name}: ${room.last_message.text}`) : null,
    )));
    if (!rooms.length) list.append(el("li", { class: "muted" }, state.rooms.loaded ? "No rooms yet." : "Loading…"));
    const room = roomId && state.rooms.items.get(roomId);
    if (room) {
      $("[data-room-name]", main).textContent = room.name;
      $("[data-members]", main).textContent = `Members: ${names(room.members)}`;
    } else if (roomId && state.rooms.loaded) {
      $("[data-room-name]", main).textContent = "This room is not yours (any more).";
      $("[data-form=say]", main).hidden = true;
    }
  };

  const line = (message, pending = false) => el("li", { "data-message": message.id || "", "data-client-id": message.client_id || "", class: pending ? "pending" : "" },
    el("strong", {}, message.author.name), " ", el("span", { class: "text" }, message.text), " ",
    el("time", { class: "muted", datetime: message.created_at || "" }, pending ? "sending…" : new Date(message.created_at).toLocaleTimeString()));

  const show = (message, where = "end") => {
    const pending = message.client_id && messages.querySelector(`li.pending[data-client-id="${CSS.escape(message.client_id)}"]`);
    if (pending) { pending.replaceWith(line(message)); shown.add(message.id); return; }
    if (shown.has(message.id)) return;
    shown.add(message.id);
    if (where === "end") messages.append(line(message));
    else messages.prepend(line(message));
  };

  const markRead = (message) => {
    const room = state.rooms.items.get(roomId);
    if (room) { room.unread = 0; room.unread_capped = false; renderUnreadTotal(); renderRooms(); }
    if (message) api("POST", `/rooms/${roomId}/read`, { body: { message_id: message.id } }).catch(() => {});
  };

  const renderTyping = () => {
    const now = Date.now();
    const typing = [...chat.typing.values()].filter((t) => t.room === roomId && t.until > now).map((t) => t.user.name);
    $("[data-typing]", main).textContent = typing.length ? `${typing.join(", ")} ${typing.length > 1 ? "are" : "is"} typing…` : "";
  };

  async function loadOlder() {
    const { data } = await api("GET", `/rooms/${roomId}/messages?limit=50${older ? `&after=${encodeURIComponent(older)}` : ""}`);
    for (const message of data.items) show(message, "start");
    older = data.next;
    $("[data-older]", main).hidden = !older;
    return data.items[0];
  }

  if (roomId) {
    $("[data-form=say]", main).hidden = false;
    $("[data-form=invite]", main).hidden = false;
    loadOlder().then((newest) => { markRead(newest); messages.lastElementChild?.scrollIntoView({ block: "end" }); })
      .catch((error) => { $("[data-chat-error]", main).textContent = explain(error); });
    $("[data-older]", main).addEventListener("click", loadOlder);
    const say = $("[data-form=say]", main);
    say.addEventListener("submit", (submitted) => {
      submitted.preventDefault();
      const text = say.text.value;
      if (!text.trim()) return;
      const clientId = uid();
      messages.append(line({ client_id: clientId, author: state.me, text }, true));
      say.reset();
      state.feed.chat(roomId, text, clientId).then(show).catch((refused) => {
        messages.querySelector(`li.pending[data-client-id="${CSS.escape(clientId)}"]`)?.remove();
        $("[data-chat-error]", main).textContent = refused.message || "The message was refused.";
      });
    });
    say.text.addEventListener("input", () => {
      if (Date.now() - lastTyping > TYPING_EVERY_MS) { lastTyping = Date.now(); state.feed.typing(roomId); }
    });
    $("[data-form=invite]", main).addEventListener("submit", async (submitted) => {
      submitted.preventDefault();
      const invite = submitted.target;
      try {
        const { data } = await api("POST", `/rooms/${roomId}/members`, { body: { email: invite.email.value.trim() } });
        state.rooms.items.set(roomId, { ...state.rooms.items.get(roomId), ...data });
        invite.reset();
        renderRooms();
      } catch (error) {
        $("[data-chat-error]", main).textContent = explain(error);
      }
    });
  }

  $("[data-form=room]", main).addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const form = submitted.target;
    const members = form.members.value.split(",").map((email) => email.trim()).filter(Boolean);
    try {
      const { data } = await api("POST", "/rooms", { body: { name: form.name.value.trim(), members } });
      state.rooms.items.set(data.id, { unread: 0, last_message: null, ...data });
      form.reset();
      location.hash = `#/rooms/${data.id}`;
    } catch (error) {
      $("[data-error]", main).textContent = explain(error);
    }
  });

  renderRooms();
  return {
    leave: () => { chat.open = null; },
    refresh: (kind) => { if (kind === "typing") renderTyping(); else if (kind === "rooms") renderRooms(); },
    message: (message) => {
      if (message.room !== roomId) return;
      show(message);
      renderTyping();
      messages.lastElementChild?.scrollIntoView({ block: "end" });
      markRead(message);
    },
  };
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = el("script", { src });
    script.addEventListener("load", resolve);
    script.addEventListener("error", () => reject(new Error(`could not load ${src}`)));
    document.head.append(script);
  });
}

function uid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// --- orders --------------------------------------------------------------------------------------

function ordersView(main) {
  mount(main, "orders-view");
  const form = $("[data-form=order]", main);
  const error = $("[data-error]", main);
  let key = null; // one Idempotency-Key per order: a retry after a network error reuses it

  const renderOrders = () => {
    const orders = [...state.orders.items.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
    $("[data-orders]", main).replaceChildren(...orders.map((order) => el("li", { "data-order": order.id },
      el("span", { class: `status ${order.status}`, "data-status": order.status }, order.status), " ",
      `${order.amount} ${order.currency} · ${order.items.map((item) => `${item.quantity} × ${item.name || item.sku}`).join(", ")}`,
      order.errors?.length ? el("span", { class: "muted" }, ` · ${order.errors.map((e) => e.message).join("; ")}`) : null,
      el("span", { class: "muted" }, ` · ${new Date(order.created_at).toLocaleString()}`),
      order.status === "paid" ? el("button", { type: "button", class: "link", "data-cancel": order.id }, "Cancel and refund") : null,
    )));
    if (!orders.length) $("[data-orders]", main).append(el("li", { class: "muted" }, "No orders yet."));
  };

  let dropIn = null; // Braintree's Drop-in instance, when the server says to use it
  Promise.all([api("GET", "/catalog"), api("GET", "/payments/client-token")]).then(async ([catalog, token]) => {
    $("[data-catalog]", main).replaceChildren(...catalog.data.items.map((item) => el("label", { class: "row" },
      el("span", { class: "grow" }, `${item.name} (${item.price} ${item.currency})`),
      el("input", { type: "number", name: `qty-${item.sku}`, "data-sku": item.sku, min: "0", max: "10", value: "0", "aria-label": `Quantity of ${item.name}` }))));
    const payment = $("[data-payment]", main);
    if (token.data.drop_in) {
      const container = el("div", { "data-drop-in": "" });
      payment.replaceChildren(container);
      await loadScript(DROP_IN);
      dropIn = await window.braintree.dropin.create({ authorization: token.data.client_token, container });
    } else if (token.data.environment === "local") {
      payment.replaceChildren(el("fieldset", {}, el("legend", {}, "Test card (local Braintree emulator)"),
        ...NONCES.map(([nonce, label], index) => el("label", { class: "row" },
          el("input", { type: "radio", name: "nonce", value: nonce, checked: index === 0 }), label))));
    } else {
      payment.replaceChildren(el("p", { class: "muted" }, "Drop-in is off on this server (BRAINTREE_DROPIN=off). " +
        "Paste a payment method nonce from your Braintree client:"),
      el("label", {}, "Payment method nonce ", el("input", { name: "nonce", required: true })));
    }
  }).catch((failure) => { error.textContent = explain(failure); form.querySelector("button[type=submit]").disabled = true; });

  const paymentNonce = async () => {
    if (dropIn) return (await dropIn.requestPaymentMethod()).nonce;
    return form.querySelector("[name=nonce]:checked, input[name=nonce]:not([type=radio])")?.value;
  };

  $("[data-orders]", main).addEventListener("click", async (clicked) => {
    const button = clicked.target.closest("[data-cancel]");
    if (!button) return;
    button.disabled = true;
    try {
      const { data } = await api("POST", `/orders/${button.dataset.cancel}/cancel`);
      state.orders.items.set(data.id, data);
      renderOrders();
    } catch (failure) {
      error.textContent = explain(failure);
      button.disabled = false;
    }
  });

  form.addEventListener("input", () => { key = null; });
  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    error.textContent = "";
    const items = [...form.querySelectorAll("[data-sku]")].map((input) => ({ sku: input.dataset.sku, quantity: Number(input.value) }))
      .filter((item) => item.quantity > 0);
    if (!items.length) { error.textContent = "Choose at least one item."; return; }
    key = key || uid();
    try {
      const nonce = await paymentNonce();
      const { data } = await api("POST", "/orders", { body: { items, payment_method_nonce: nonce }, headers: { "Idempotency-Key": key } });
      if (!state.orders.items.has(data.id) || state.orders.items.get(data.id).status === "pending") state.orders.items.set(data.id, data);
      key = null;
      for (const input of form.querySelectorAll("[data-sku]")) input.value = "0";
      dropIn?.clearSelectedPaymentMethod();
      renderOrders();
    } catch (failure) {
      error.textContent = explain(failure);
    }
  });
  renderOrders();
  return { refresh: (kind) => { if (kind === "orders") renderOrders(); } };
}

boot();

// --- account: verification, sessions, invites, password ------------------------------------------

function accountView(main) {
  mount(main, "account-view");
  const error = $("[data-error]", main);
  const notice = $("[data-notice]", main);
  const fail = (caught) => { error.textContent = explain(caught); };

  async function load() {
    error.textContent = "";
    try {
      const [{ data: me }, { data: sessions }, { data: invites }] = await Promise.all([
        api("GET", "/auth/me"), api("GET", "/auth/sessions"), api("GET", "/invites?limit=100"),
      ]);
      state.me = me.user;
      showVerification(me.user);
      $("[data-verified]", main).replaceChildren(me.user.email_verified
        ? `${me.user.email} is verified.`
        : el("span", {}, `${me.user.email} is not verified yet. `,
          el("button", { type: "button", class: "link", onclick: resendVerification }, "Send the letter again")));
      $("[data-sessions]", main).replaceChildren(...sessions.items.map(sessionItem));
      $("[data-invites]", main).replaceChildren(...(invites.items.length
        ? invites.items.map(inviteItem) : [el("li", { class: "muted" }, "None.")]));
    } catch (caught) { fail(caught); }
  }

  function sessionItem(item) {
    const when = item.last_used_at ? new Date(item.last_used_at).toLocaleString() : "never";
    return el("li", { "data-session": item.id },
      el("span", { class: "grow" }, `${item.user_agent || "unknown client"} · ${item.address || "?"} · last used ${when}`,
        item.current ? el("strong", {}, " (this one)") : null),
      el("button", { type: "button", onclick: () => endSession(item) }, item.current ? "Sign out" : "End"));
  }

  async function endSession(item) {
    try {
      await api("DELETE", `/auth/sessions/${item.id}`);
      if (item.current) return signedOut();
      load();
    } catch (caught) { fail(caught); }
  }

  function inviteItem(item) {
    const what = item.kind === "document" ? `document (${item.role})` : "room";
    return el("li", { "data-invite": item.id },
      el("span", { class: "grow" }, `${item.email}: ${what}, since ${new Date(item.created_at).toLocaleString()}`),
      el("button", { type: "button", onclick: () => withdraw(item) }, "Withdraw"));
  }

  async function withdraw(item) {
    try { await api("DELETE", `/invites/${item.id}`); load(); } catch (caught) { fail(caught); }
  }

  $("[data-form=password]", main).addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const form = submitted.target;
    error.textContent = notice.textContent = "";
    try {
      await api("POST", "/auth/password", { body: { current_password: form.current.value, password: form.password.value } });
      form.reset();
      notice.textContent = "Password changed; your other sessions have ended.";
      load();
    } catch (caught) { fail(caught); }
  });
  load();
  return {};
}
