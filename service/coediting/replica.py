"""One document's CRDT held in this process: a Yjs document (Yrs through pycrdt) whose text is `body`.

The only module that imports the engine. A replica is the fold of the document's log up to `seq`,
plus, while a write is in flight, the updates of that write (applied before they commit; a write that
fails leaves the replica `stale`, to be read again, since the engine cannot take an update back).
"""

from __future__ import annotations

import asyncio
import hashlib

from pycrdt import Doc, Text

from . import texts
from .yjs import ROOT, StateVector, read_vector

GENESIS = 1 << 32  # first texts' client ids start past Yjs's own (random 32-bit)


def genesis_client(document: object, body: str) -> int:
    """The client id of a document's first text made from `body`: the same on every instance, and
    another for another text. A log lost by hand is started again from the body; under the lost first
    text's ids (client 1 before) a different text never converged with the editors that held it, and
    under an id counted from `live.seq` a `live` reset by hand brought that back."""
    digest = hashlib.sha256(f"{document}:{body}".encode()).digest()
    return GENESIS + int.from_bytes(digest[:8], "big") % (1 << 52)


BASE_EVERY = 64  # updates between two bases: a rerun reads at most about this many entries again


class Replica:
    __slots__ = ("base", "doc", "genesis", "lock", "seq", "stale", "subscribers", "text")

    def __init__(self) -> None:
        self.doc: Doc[Text] = Doc()
        self.text: Text = self.doc.get(ROOT, type=Text)
        self.seq = 0  # updates of the log folded in
        self.genesis: bytes | None = None  # the first text, while it is not in the log yet
        self.stale = False
        self.subscribers = 0  # `doc` subscriptions of this process on it: never evicted while > 0
        self.lock = asyncio.Lock()  # one write at a time per document in this process
        # A recent state known to be exactly the log's up to its seq: a write that must run again (a
        # write conflict) goes back to it and reads only the log after it, not the whole log.
        self.base: tuple[bytes, int, bytes | None] | None = None

    def reset(self) -> None:
        """Empty, to be read again from the log (in place: subscriptions keep their reference)."""
        self.doc = Doc()
        self.text = self.doc.get(ROOT, type=Text)
        self.seq, self.genesis, self.stale, self.base = 0, None, False, None

    def mark(self, every: int = BASE_EVERY) -> None:
        """Remember the state now as the base, if the one held is `every` updates old (or none is): only
        when the replica is exactly the log up to `seq`, nothing in flight."""
        if self.base is None or self.seq - self.base[1] >= every:
            self.base = (self.doc.get_update(), self.seq, self.genesis)

    def rewind(self, base: tuple[bytes, int, bytes | None]) -> None:
        """Back to `base` (what a failed write applied is gone)."""
        state, seq, genesis = base
        self.doc = Doc()
        self.text = self.doc.get(ROOT, type=Text)
        self.apply(state)
        self.seq, self.genesis, self.base = seq, genesis, base

    def apply(self, update: bytes) -> None:
        """Fold an update in (ValueError if the engine cannot decode it)."""
        self.doc.apply_update(update)

    def begin(self, document: object, body: str) -> None:
        """The first text of a document without a log: made the same way on every instance (one client,
        clock 0), so two instances that start it at once make the same update."""
        first: Doc[Text] = Doc(client_id=genesis_client(document, body))
        first.get(ROOT, type=Text).insert(0, body)
        self.genesis = first.get_update()
        self.apply(self.genesis)

    def vector(self) -> bytes:
        return self.doc.get_state()

    def known(self) -> StateVector:
        return read_vector(self.doc.get_state())

    def missing(self, vector: bytes | None) -> bytes:
        """What a client with `vector` lacks (everything without one)."""
        return self.doc.get_update(vector) if vector else self.doc.get_update()

    def body(self) -> str:
        return str(self.text)

    def length(self) -> int:
        """The text's length in UTF-8 bytes, kept by the engine (no copy of the text made)."""
        return len(self.text)

    def edit(self, new: str) -> bytes | None:
        """Turn the text into `new` by small edits; the update that does it (None: nothing to do)."""
        old = self.body()
        changes = texts.edits(old, new)
        if not changes:
            return None
        before = self.doc.get_state()
        with self.doc.transaction():
            for position, deleted, inserted in reversed(texts.in_bytes(old, changes)):
                if deleted:
                    del self.text[position : position + deleted]
                if inserted:
                    self.text.insert(position, inserted)
        return self.doc.get_update(before)
