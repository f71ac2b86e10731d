// Socket.IO peer for `make bench`, written the way Socket.IO users write it: one Node process, a room
// per document, a MongoDB change stream that emits each changed document to its room.
//
// No auth: it does less than Murmuration, which authenticates each connection, authorizes each event
// per subscriber and adds resume cursors.
//
// Env: MONGO_URL, MONGO_DB, PORT, HOST (default 127.0.0.1).
// Client: emit("join", documentId, ack); the ack says it is in the room; then "change" events carry the
// whole document (`updated_at` as ISO 8601, which is how JSON.stringify writes a Date).

"use strict";

const { createServer } = require("node:http");
const { MongoClient } = require("mongodb");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || "127.0.0.1";

const httpServer = createServer();
const io = new Server(httpServer);

io.on("connection", (socket) => {
  socket.on("join", (documentId, ack) => {
    socket.join(`document:${documentId}`);
    if (typeof ack === "function") ack("joined");
  });
});

async function main() {
  const client = new MongoClient(process.env.MONGO_URL);
  // Listen once MongoDB answers: a peer that accepts clients but cannot follow the writes would lose them.
  await client.connect();
  const documents = client.db(process.env.MONGO_DB).collection("documents");
  const changes = documents.watch([{ $match: { operationType: { $in: ["insert", "update", "replace"] } } }], {
    fullDocument: "updateLookup",
  });
  httpServer.listen(port, host, () => console.log(`socket.io peer on ${host}:${port}`));
  for await (const change of changes) {
    // The lookup finds nothing when the document was deleted in the meantime.
    if (change.fullDocument) {
      io.to(`document:${change.documentKey._id}`).emit("change", change.fullDocument);
    }
  }
}

main().catch((error) => {
  console.error("socket.io peer failed:", error);
  process.exit(1);
});
