"""The realtime engine: committed changes out of MongoDB, onto the websockets entitled to them.

    node (a Sanic worker) -> broker (MongoDB's change stream) -> hub -> router -> connection

Pure, no I/O (testable with plain values): `change` (one committed change), `board` (who is online
and on which document), `streams` (each stream's rule: who sees what of a change), `router`
(subscriptions indexed by audience, a change in, frames out), `frames` (the protocol's JSON frames),
`session` (one websocket's protocol state machine; its I/O is injected, it never touches a socket).

I/O: `hub` (the process's one change stream: dispatch, replay, observers), `roster` (this
instance's connections and presence in MongoDB, its heartbeat, reaping dead instances), `outbox`
and `wire` (frames onto one socket, bounded; its keepalive pings), `inbox` (messages in from one
socket, in Sanic's frame assembler's place), `adopt` (what is changed on Sanic's websocket after its
handshake), `connection` (reads a socket into its session). Timers shared by every socket of the
process, so that an idle one holds no task or timer of its own: `keepalive` (a wheel of sockets to
ping) and `deadlines` (their sessions' expiry).

May import: `service`'s infrastructure (config, database, errors, metrics, ratelimit, payloads,
stored), the domains it authorizes against (accounts, documents, rooms), and `models`. Within
`service/`, only the wiring (`app`, `lifecycle`, `context`) imports it; the websocket handler
(`handlers/realtime.py`) hands it sockets; it never imports `payments` (tests/test_layout.py).
"""
