"""The edits that turn one text into another, small enough to merge with what others type meanwhile.

A REST writer sends a whole new body; replacing the text would delete every character typed
concurrently. Instead the difference is found (common prefix and suffix, then lines, then characters
within each changed run of lines, so the work stays near-linear on a megabyte) and applied as
insertions and deletions. Positions are UTF-8 byte offsets, what the engine's text takes. Pure.
"""

from __future__ import annotations

from difflib import SequenceMatcher

Edit = tuple[int, int, str]  # (position in the old text, characters deleted there, text inserted)
FINE = 400  # a changed run this long (or shorter) on both sides is diffed character by character


def edits(old: str, new: str) -> list[Edit]:
    """Edits on `old`, in character positions, ordered by position, that produce `new`."""
    start = _common_prefix(old, new)
    end = _common_suffix(old, new, start)
    return _middle(old[start : len(old) - end], new[start : len(new) - end], start)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    low, high = 0, n
    while low < high:  # binary search on slices: C-speed comparisons, O(n log n) at worst
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _common_suffix(a: str, b: str, prefix: int) -> int:
    n = min(len(a), len(b)) - prefix
    low, high = 0, n
    while low < high:
        mid = (low + high + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            low = mid
        else:
            high = mid - 1
    return low


def _middle(old: str, new: str, offset: int) -> list[Edit]:
    if not old and not new:
        return []
    if not old or not new or (len(old) <= FINE and len(new) <= FINE):
        return _chars(old, new, offset)
    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    out: list[Edit] = []
    position = offset
    matcher = SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        a, b = "".join(old_lines[i1:i2]), "".join(new_lines[j1:j2])
        if tag != "equal":
            out.extend(_chars(a, b, position) if len(a) <= FINE and len(b) <= FINE else [(position, len(a), b)])
        position += len(a)
    return out


def _chars(old: str, new: str, offset: int) -> list[Edit]:
    if not old or not new:
        return [(offset, len(old), new)]
    out: list[Edit] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag != "equal":
            out.append((offset + i1, i2 - i1, new[j1:j2]))
    return out


def apply(text: str, changes: list[Edit]) -> str:
    """`changes` applied to `text` (what the engine will hold): for tests and checks."""
    for position, deleted, inserted in reversed(changes):
        text = text[:position] + inserted + text[position + deleted :]
    return text


def in_bytes(text: str, changes: list[Edit]) -> list[tuple[int, int, str]]:
    """The same edits with positions and deleted lengths in UTF-8 bytes of `text`."""
    out = []
    last, at = 0, 0
    for position, deleted, inserted in changes:
        at += len(text[last:position].encode())
        out.append((at, len(text[position : position + deleted].encode()), inserted))
        last = position
    return out
