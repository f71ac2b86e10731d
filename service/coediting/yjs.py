"""Yjs's binary formats, read without the engine: updates (v1), state vectors, awareness updates.

An update from a client is checked here before it reaches the CRDT, because the engine keeps what it
is given (pending structs, other shared types) and cannot take it back: only plain text in the root
`Y.Text` named `body`, every client's structs following on from what the server has, every origin
and deletion naming something that exists. Pure: bytes in, values or `BadUpdate` out.

The layouts are Yjs's (`encoding.js`, `y-protocols/awareness.js`); integers are lib0 varints.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass, field
from typing import Any

ROOT = "body"
GC, DELETED, STRING, SKIP = 0, 1, 4, 10
ORIGIN, RIGHT_ORIGIN, PARENT_SUB = 0x80, 0x40, 0x20
MAX_CLIENTS = 64  # clients in one update (a paste of a long offline session stays far below)
# What the engine (Yrs) holds without truncating: client ids are JavaScript-safe integers, clocks and
# lengths 32-bit. A larger value would mean one thing here and another to the engine and to Yjs.
MAX_CLIENT = (1 << 53) - 1
MAX_CLOCK = (1 << 32) - 1

StateVector = dict[int, int]  # client id -> the next clock the server expects from it


class BadUpdate(ValueError):
    """The bytes are not an update (or awareness update) this service takes."""


class Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def uint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= len(self.data):
                raise BadUpdate("the update ends in the middle of a number")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 56:
                raise BadUpdate("a number in the update is too large")

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise BadUpdate("the update ends in the middle of a struct")
        self.pos += 1
        return self.data[self.pos - 1]

    def chunk(self) -> bytes:
        size = self.uint()
        if size > len(self.data) - self.pos:
            raise BadUpdate("a string in the update is longer than the update")
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def text(self) -> str:
        try:
            return self.chunk().decode("utf-8")
        except UnicodeDecodeError:
            raise BadUpdate("a string in the update is not UTF-8") from None

    def done(self) -> bool:
        return self.pos == len(self.data)


def utf16_length(text: str) -> int:
    """Yjs counts a string's clock in UTF-16 code units (an emoji is 2)."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


@dataclass
class Update:
    """What an update holds: per client its structs (clock range and the IDs they refer to), and its
    deletions."""

    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)  # client -> [start, end)
    structs: dict[int, list[Struct]] = field(default_factory=dict)  # client -> its structs, in clock order
    deletions: list[tuple[int, int, int]] = field(default_factory=list)  # (client, clock, length)
    inserted: int = 0  # UTF-16 units of text inserted

    def is_empty(self) -> bool:
        return not self.ranges and not self.deletions

    def news(self, known: StateVector) -> bool:
        """Whether it may hold anything `known` does not (deletions alone may: `inserts` says if more)."""
        return bool(self.deletions) or self.inserts(known)

    def inserts(self, known: StateVector) -> bool:
        """Whether it inserts anything `known` does not hold."""
        return any(end > known.get(client, 0) for client, (_, end) in self.ranges.items())


@dataclass(frozen=True, slots=True)
class Struct:
    end: int  # the clock after its last (the client's next struct starts there)
    references: tuple[tuple[int, int], ...]  # (client, clock) of its origins


def read_update(data: bytes) -> Update:
    """Decode a v1 update holding only text in the root `body`; BadUpdate for anything else."""
    reader, update = Reader(data), Update()
    clients = reader.uint()
    if clients > MAX_CLIENTS:
        raise BadUpdate(f"an update from more than {MAX_CLIENTS} clients")
    for _ in range(clients):
        structs, client, clock = reader.uint(), _client(reader.uint()), reader.uint()
        if client in update.ranges:
            raise BadUpdate("a client appears twice in the update")
        start, listed = clock, update.structs.setdefault(client, [])
        for _ in range(structs):
            references: list[tuple[int, int]] = []
            length = _struct(reader, update, references)
            listed.append(Struct(_clock(clock + length), tuple(references)))
            clock = listed[-1].end
        update.ranges[client] = (start, clock)
    for _ in range(reader.uint()):
        client = _client(reader.uint())
        for _ in range(reader.uint()):
            clock, length = reader.uint(), reader.uint()
            if length == 0:
                raise BadUpdate("an empty deletion")
            _clock(clock + length)
            update.deletions.append((client, clock, length))
    if not reader.done():
        raise BadUpdate("bytes after the end of the update")
    return update


def _struct(reader: Reader, update: Update, references: list[tuple[int, int]]) -> int:
    """Read one struct (its origins into `references`); its length in clock units."""
    info = reader.byte()
    kind = info & 0x1F
    if kind == GC:
        return _positive(reader.uint())
    if kind == SKIP:
        raise BadUpdate("an update with a gap (skip) in it")
    if info & ORIGIN:
        references.append((_client(reader.uint()), _clock(reader.uint())))
    if info & RIGHT_ORIGIN:
        references.append((_client(reader.uint()), _clock(reader.uint())))
    if not info & (ORIGIN | RIGHT_ORIGIN):
        if reader.uint() != 1:
            raise BadUpdate("text may only go into the document's root text")
        if reader.text() != ROOT:
            raise BadUpdate(f"the only shared type is the text {ROOT!r}")
        if info & PARENT_SUB:
            raise BadUpdate("the text has no keys")
    if kind == DELETED:
        return _positive(reader.uint())
    if kind == STRING:
        text = reader.text()
        length = utf16_length(text)
        update.inserted += length
        return _positive(length)
    raise BadUpdate("only plain text can be inserted (no embeds, formatting or nested types)")


def _client(value: int) -> int:
    if value > MAX_CLIENT:
        raise BadUpdate("a client id over 2^53")
    return value


def _clock(value: int) -> int:
    if value > MAX_CLOCK:
        raise BadUpdate("a clock over 2^32")
    return value


def _positive(length: int) -> int:
    if length <= 0:
        raise BadUpdate("a struct of length 0")
    return length


def check(update: Update, known: StateVector) -> None:
    """Refuse an update that does not follow on from `known`: a client's structs starting past what the
    server has of it, or an origin or deletion naming something that does not exist (the engine would
    keep such an update pending, out of the text, for good). Its structs are integrated as the engine
    would, each once all it refers to is there: one that never can be (it refers to itself, to one
    after it, or to a struct that refers back to it) is refused too. In time linear in the structs (a
    struct waits on the one reference it lacks, and is woken once that client's text reaches it),
    whatever order a hostile update lists them in."""
    for client, (start, _) in update.ranges.items():
        if start > known.get(client, 0):
            raise BadUpdate("the update depends on changes the server does not have: sync first")
    have = dict(known)
    ready = [client for client, structs in update.structs.items() if structs]
    following = dict.fromkeys(ready, 0)  # client -> the index of its next struct to integrate
    waiting: dict[int, list[tuple[int, int]]] = {}  # client -> heap of (clock needed, client waiting)
    left = sum(len(structs) for structs in update.structs.values())
    while ready:
        client = ready.pop()
        structs = update.structs[client]
        while following[client] < len(structs):
            struct = structs[following[client]]
            lacking = next(((named, clock) for named, clock in struct.references if clock >= have.get(named, 0)), None)
            if lacking is not None:
                heapq.heappush(waiting.setdefault(lacking[0], []), (lacking[1], client))
                break
            following[client] += 1
            left -= 1
            have[client] = reached = max(have.get(client, 0), struct.end)
            woken = waiting.get(client)
            while woken and woken[0][0] < reached:
                ready.append(heapq.heappop(woken)[1])
    if left:
        raise BadUpdate("the update refers to text the server does not have: sync first")
    for client, clock, length in update.deletions:
        if clock + length > have.get(client, 0):
            raise BadUpdate("the update deletes text the server does not have: sync first")


def read_vector(data: bytes) -> StateVector:
    reader, vector = Reader(data), {}
    for _ in range(reader.uint()):
        client = _client(reader.uint())
        vector[client] = _clock(reader.uint())
    if not reader.done():
        raise BadUpdate("bytes after the end of the state vector")
    return vector


# --- awareness (y-protocols) -----------------------------------------------------------------


@dataclass(frozen=True)
class Awareness:
    client: int
    clock: int
    state: dict[str, Any] | None  # None: the client is gone


def read_awareness(data: bytes, max_state: int) -> list[Awareness]:
    reader, found = Reader(data), []
    for _ in range(reader.uint()):
        client, clock = reader.uint(), reader.uint()
        raw = reader.chunk()
        if len(raw) > max_state:
            raise BadUpdate(f"an awareness state over {max_state} bytes")
        try:
            state = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadUpdate("an awareness state that is not JSON") from None
        if state is not None and not isinstance(state, dict):
            raise BadUpdate("an awareness state must be an object or null")
        found.append(Awareness(client, clock, state))
    if not reader.done():
        raise BadUpdate("bytes after the end of the awareness update")
    return found


def write_awareness(entries: list[Awareness]) -> bytes:
    out = bytearray(varint(len(entries)))
    for entry in entries:
        text = json.dumps(entry.state, separators=(",", ":"), ensure_ascii=False).encode()
        out += varint(entry.client) + varint(entry.clock) + varint(len(text)) + text
    return bytes(out)


def varint(value: int) -> bytes:
    """A lib0 variable-length unsigned integer."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
