"""Live co-editing: a document's body as a CRDT (Yjs's format, the Yrs engine through pycrdt).

Pure: `yjs` (Yjs's binary formats, read and checked without the engine), `texts` (the edits between
two texts). `replica` (the only module that imports the engine: one document's CRDT in memory),
`ledger` (the log in MongoDB: `doc_updates`, `doc_snapshots`), `editors` (the process's live
documents: replicas, the writer, awareness), `keeper` (save points and compaction, supervised).

The realtime engine carries it (the `doc` stream, docs/protocol.md); it imports nothing of realtime.
"""
