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
//   feed.unsubscribe("docs"); feed.stop();
//
// `url` defaults to this page's origin + /ws. `onStatus(state, delayMs)`: connecting, live,
// reconnecting (with the delay), offline. `onUnauthorized()`: the server closed with 4001 (sign in
// again). Hooks per subscription: `event(frame)` each event, `live()` once it is live, `reset()` before
// a state stream (presence, online) sends its state again, `expired()` when too much was missed to
// replay (reload by REST: the feed then follows from now), `error(frame)` when it is refused.
// `chat()` rejects if the feed is stopped or the session ends before the message is acknowledged.
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
    this.attempt = 0;
    this.ws = null;
    this.ready = false;
    this.stopped = false;
    this.timer = null;
    this.reconnectNow = () => { if (!this.ws && !this.stopped) this.open(); };
    globalThis.addEventListener?.("online", this.reconnectNow); // a browser back online: now, not at backoff's end
  }

  start() { this.open(); }

  stop() {
    this.stopped = true;
    this.failPending("the feed was stopped");
    clearTimeout(this.timer);
    globalThis.removeEventListener?.("online", this.reconnectNow);
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
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  // --- connection life cycle -------------------------------------------------------------------

  open() {
    clearTimeout(this.timer);
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
    this.ready = false;
    if (this.stopped) return;
    if (code === 4001) {
      this.failPending("the session ended: sign in again");
      this.onStatus("offline");
      this.onUnauthorized();
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
      default: return undefined;
    }
  }

  resume(user) {
    this.attempt = 0;
    this.ready = true;
    this.onStatus("live");
    this.onReady(user);
    for (const [id, sub] of this.subs) this.sendSubscribe(id, sub);
    for (const [document, state] of this.presence) this.send({ type: "presence", document, state });
    for (const { frame } of this.pending.values()) this.send(frame);
  }

  sendSubscribe(id, sub) {
    const frame = { type: "subscribe", id, stream: sub.stream };
    if (sub.params) frame.params = sub.params;
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
