"""Who is online and who is on which document: state kept in memory from the change stream.

Every instance writes its connections and presence to MongoDB; every hub folds the resulting
changes into a Board, so each process knows the whole service's state without a query per event.
Pure: no I/O, fed with `Change`s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from models.documents import UserRefOut, presence_entry, presence_summary

from .change import Change


@dataclass(frozen=True, slots=True)
class Delta:
    """What one change did to the board: the online count moved, presence of these documents moved."""

    online: bool = False
    documents: list[tuple[Any, set[Any]]] = field(default_factory=list)  # (document id, its readers)


@dataclass
class Board:
    connections: dict[str, Any] = field(default_factory=dict)  # connection id -> user id
    online: Counter[Any] = field(default_factory=Counter)  # user id -> open connections
    entries: dict[str, tuple[Any, UserRefOut, str]] = field(default_factory=dict)  # presence id -> (doc, user, state)
    by_document: dict[Any, set[str]] = field(default_factory=dict)  # document id -> presence ids
    access: dict[Any, set[Any]] = field(default_factory=dict)  # document id -> reader ids (docs with presence)

    @property
    def count(self) -> int:
        return len(self.online)

    def summary(self, document: Any) -> tuple[list[UserRefOut], list[UserRefOut]]:
        return presence_summary(
            (self.entries[pid][1], self.entries[pid][2]) for pid in self.by_document.get(document, ())
        )

    def readers(self, document: Any) -> set[Any]:
        return self.access.get(document, set())

    def tracks(self, document: Any) -> bool:
        """Whether the board knows who may read `document` (it does while someone is on it)."""
        return document in self.access

    def grant(self, document: Any, readers: Iterable[Any]) -> None:
        """Who may read `document` now, read from the document itself (presence records say nothing of
        it, so a stale list can never outlive a change of access); document changes keep it current."""
        self.access[document] = set(readers)

    def load(
        self,
        connections: Iterable[dict[str, Any]],
        presence: Iterable[dict[str, Any]],
        access: dict[Any, set[Any]],
    ) -> list[tuple[str, Any]]:
        """Fold in the stored records and each present-on document's readers; the (collection, id) of
        records that cannot be read are returned, and left out."""
        skipped: list[tuple[str, Any]] = []
        for doc in connections:
            try:
                self._connect(doc["_id"], doc["user"])
            except (KeyError, TypeError, ValueError):
                skipped.append(("connections", doc.get("_id")))
        self.access.update(access)
        for doc in presence:
            try:
                self._place(doc)
            except (KeyError, TypeError, ValueError):
                skipped.append(("presence", doc.get("_id")))
        return skipped

    def apply(self, change: Change) -> Delta:
        """Fold one change in, and say what it changed."""
        if change.coll == "connections":
            before = self.count
            if change.op == "delete":
                self._disconnect(change.id)
            elif change.after is not None:
                self._connect(change.id, change.after["user"])
            return Delta(online=self.count != before)
        if change.coll == "presence":
            return Delta(documents=self._presence(change))
        if change.coll == "documents" and change.id in self.access:
            if change.after is None:
                self.access.pop(change.id, None)
                return Delta()
            had, self.access[change.id] = self.access[change.id], set(change.after.get("access", ()))
            gained = self.access[change.id] - had
            if gained:  # `access` only holds documents with presence: who was let in sees who is there
                return Delta(documents=[(change.id, gained)])
        return Delta()

    def _connect(self, conn: str, user: Any) -> None:
        if conn not in self.connections:
            self.connections[conn] = user
            self.online[user] += 1

    def _disconnect(self, conn: str) -> None:
        user = self.connections.pop(conn, None)
        if user is None:
            return
        self.online[user] -= 1
        if self.online[user] <= 0:
            del self.online[user]

    def _presence(self, change: Change) -> list[tuple[Any, set[Any]]]:
        """Fold a presence change; (document, readers) for each document whose summary moved. A record
        moved to another document (in the shell) leaves the first and joins the second."""
        known = self.entries.get(change.id)
        placed = change.after if change.op != "delete" else None
        documents = [known[0] if known else (change.before or {}).get("document")]
        if placed is not None:
            documents.append(placed.get("document"))
        touched = list(dict.fromkeys(d for d in documents if d is not None))  # in order, once each
        before = {d: self.summary(d) for d in touched}
        readers = {d: set(self.readers(d)) for d in touched}  # taken first: the last entry leaving forgets them
        if placed is not None:
            self._check(placed)  # a record that cannot be placed changes nothing, not even the old entry
        self._remove(change.id)
        if placed is not None:
            self._place(placed)
        for d in touched:
            readers[d] |= self.readers(d)
            if d not in self.by_document:  # nobody is on it any more: who may read it is not needed
                self.access.pop(d, None)
        return [(d, readers[d]) for d in touched if self.summary(d) != before[d]]

    def _check(self, doc: dict[str, Any]) -> tuple[Any, UserRefOut, str]:
        """What a record places, or an error for a record that cannot be placed (before any change)."""
        document = doc["document"]
        user, state = presence_entry(doc)
        hash((document, doc["_id"]))  # a hand-made record with a list or object here
        return document, user, state

    def _place(self, doc: dict[str, Any]) -> None:
        document, user, state = self._check(doc)
        self.entries[doc["_id"]] = (document, user, state)
        self.by_document.setdefault(document, set()).add(doc["_id"])
        self.access.setdefault(document, set())  # unknown until granted: nobody sees it meanwhile

    def _remove(self, pid: str) -> None:
        known = self.entries.pop(pid, None)
        if known is None:
            return
        document = known[0]
        ids = self.by_document.get(document)
        if ids is not None:
            ids.discard(pid)
            if not ids:
                del self.by_document[document]  # its access goes once the change is folded in
