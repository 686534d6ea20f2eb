"""Which rows of each table can differ between two SQLite files, read from their pages.

A change-only re-sync compares its snapshot with the baseline, both page-for-page copies of the source,
and SQLite rewrites only the pages a write touches. A table leaf page with the same bytes in both files,
and a leaf of that table in both, holds the same rows: only the rows on the other leaves need comparing
in SQL (https://sqlite.org/fileformat.html, 1.6 and 1.5 for the free list).

A row too big for its leaf continues on overflow pages, which the leaf only points to. So the proof also
needs every differing page to be accounted for: a b-tree page or a free page of either file, or a page the
baseline did not have (an unchanged leaf's overflow chain lies within the baseline's pages). Any other
differing page may be an unchanged leaf's overflow: then nothing is proven and `suspects` returns None,
as it does for files it does not read page by page (other page sizes, auto-vacuum, a -wal file beside).
"""

from __future__ import annotations

import os
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOWEST, HIGHEST = -(2**63), 2**63 - 1  # the rowid range
BLOCK_PAGES = 2048  # pages compared at a time: 8 MiB of each file at 4 KiB pages
TABLE_INTERIOR, TABLE_LEAF, INDEX_INTERIOR, INDEX_LEAF = 0x05, 0x0D, 0x02, 0x0A


@dataclass(frozen=True)
class Header:
    page_size: int
    pages: int
    first_trunk: int
    encoding: int
    auto_vacuum: bool


@dataclass(frozen=True)
class Suspects:
    """Per table, the rowid ranges (inclusive) whose rows may differ: in the new file and in the baseline."""

    new: dict[str, tuple[tuple[int, int], ...]]
    base: dict[str, tuple[tuple[int, int], ...]]
    pages_differing: int
    pages: int


def read_header(fd: int) -> Header:
    raw = os.pread(fd, 100, 0)
    if len(raw) < 100 or not raw.startswith(b"SQLite format 3\x00"):
        raise ValueError("not an SQLite database")
    size = struct.unpack(">H", raw[16:18])[0]
    size = 65536 if size == 1 else size
    pages = os.fstat(fd).st_size // size
    return Header(
        page_size=size,
        pages=pages,
        first_trunk=struct.unpack(">I", raw[32:36])[0],
        encoding=struct.unpack(">I", raw[56:60])[0],
        auto_vacuum=struct.unpack(">I", raw[52:56])[0] != 0,
    )


def differing_pages(fa: int, fb: int, size: int, pages_a: int, pages_b: int) -> set[int]:
    """Page numbers (1-based) whose bytes differ, pages only one file has included. Reads both files in
    blocks: memory stays at two blocks."""
    found: set[int] = set()
    block = BLOCK_PAGES * size
    for start in range(0, min(pages_a, pages_b) * size, block):
        a, b = os.pread(fa, block, start), os.pread(fb, block, start)
        n = min(len(a), len(b)) // size
        if a[: n * size] == b[: n * size]:
            continue
        words = size // 8
        va = np.frombuffer(a, np.uint64, n * words).reshape(n, words)
        vb = np.frombuffer(b, np.uint64, n * words).reshape(n, words)
        first = start // size + 1
        found.update(int(i) + first for i in np.flatnonzero((va != vb).any(axis=1)))
    found.update(range(min(pages_a, pages_b) + 1, max(pages_a, pages_b) + 1))
    return found


class Tree:
    """Reads one file's b-trees: the pages of each, and each table leaf's rowid range."""

    def __init__(self, fd: int, header: Header):
        self.fd, self.size, self.header = fd, header.page_size, header

    def page(self, number: int) -> tuple[bytes, int]:
        if not 1 <= number <= self.header.pages:
            raise ValueError(f"page {number} is outside the file")
        return os.pread(self.fd, self.size, (number - 1) * self.size), 100 if number == 1 else 0

    def kind(self, number: int) -> int:
        return os.pread(self.fd, 1, (number - 1) * self.size + (100 if number == 1 else 0))[0]

    def walk(self, root: int, leaves: dict[int, tuple[int, int]], others: set[int]) -> None:
        """Every page of the b-tree at `root`: table leaves into `leaves` (page -> rowid range), every
        other page (interior, index) into `others`.

        A b-tree is balanced (every leaf at one depth; each snapshot passed SQLite's integrity check), so
        the first child's kind is every sibling's: leaves are not read at all."""
        stack = [(root, LOWEST, HIGHEST, self.kind(root))]
        while stack:
            number, lo, hi, kind = stack.pop()
            if kind == TABLE_LEAF:
                leaves[number] = (lo, hi)
                continue
            others.add(number)
            if kind == INDEX_LEAF:
                continue
            if kind not in (TABLE_INTERIOR, INDEX_INTERIOR):
                raise ValueError(f"page {number} is not a b-tree page")
            below = self.children(number, kind, lo, hi)
            child_kind = self.kind(below[0][0])
            stack.extend((child, low, high, child_kind) for child, low, high in below)

    def children(self, number: int, kind: int, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """An interior page's children with their rowid ranges (an index's: the parent's range)."""
        data, at = self.page(number)
        cells, right = struct.unpack(">H", data[at + 3 : at + 5])[0], struct.unpack(">I", data[at + 8 : at + 12])[0]
        page = np.frombuffer(data + bytes(9), np.uint8)  # padded: a varint read never runs off the end
        offsets = np.frombuffer(data, ">u2", cells, at + 12).astype(np.int64)
        child = np.frombuffer(page[offsets[:, None] + np.arange(4)].tobytes(), ">u4").tolist()
        if kind != TABLE_INTERIOR:
            return [(c, lo, hi) for c in child] + [(right, lo, hi)]
        keys = varints(page[offsets[:, None] + 4 + np.arange(9)]).tolist()
        lows = [lo] + [k + 1 for k in keys]
        return list(zip(child + [right], lows, keys + [hi], strict=True))

    def free_pages(self) -> set[int]:
        """The free list: its trunk pages and the free pages each lists."""
        found: set[int] = set()
        trunk = self.header.first_trunk
        while trunk and trunk not in found:
            data, _ = self.page(trunk)
            found.add(trunk)
            count = struct.unpack(">I", data[4:8])[0]
            found.update(struct.unpack(f">{count}I", data[8 : 8 + 4 * count]))
            trunk = struct.unpack(">I", data[:4])[0]
        return found


def varints(raw: np.ndarray) -> np.ndarray:
    """SQLite's big-endian varints (1-9 bytes; one per row of `raw`, n x 9) as signed 64-bit integers."""
    value = np.zeros(len(raw), np.uint64)
    going = np.ones(len(raw), bool)
    for j in range(8):
        byte = raw[:, j].astype(np.uint64)
        value = np.where(going, (value << np.uint64(7)) | (byte & np.uint64(0x7F)), value)
        going &= byte >= 0x80
    value = np.where(going, (value << np.uint64(8)) | raw[:, 8].astype(np.uint64), value)
    return value.view(np.int64)


def _roots(path: Path) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT name, type, rootpage FROM sqlite_master WHERE rootpage > 0").fetchall()
    return {name: (kind, root) for name, kind, root in rows}


def _layout(path: Path, fd: int, header: Header) -> tuple[dict[str, dict[int, tuple[int, int]]], set[int]]:
    """Per table, its leaves (page -> rowid range); and every page that is not a table leaf or overflow."""
    tree = Tree(fd, header)
    leaves: dict[str, dict[int, tuple[int, int]]] = {}
    others = {1} | tree.free_pages()
    for name, (kind, root) in _roots(path).items():
        found: dict[int, tuple[int, int]] = {}
        tree.walk(root, found, others)
        if kind == "table":
            leaves[name] = found
        else:
            others.update(found)
    return leaves, others


def _ranges(leaves: dict[int, tuple[int, int]], proven: set[int]) -> tuple[tuple[int, int], ...]:
    """The rowid ranges of the leaves not proven, adjacent ones merged."""
    out: list[list[int]] = []
    for lo, hi in sorted(r for page, r in leaves.items() if page not in proven):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def suspects(new: str | Path, base: str | Path, tables: list[str]) -> Suspects | None:
    """The rowid ranges of `tables` where rows may differ between `new` and `base`, or None when the
    files' pages prove nothing (then every row is compared)."""
    paths = [Path(new).resolve(), Path(base).resolve()]
    if any(Path(f"{p}-wal").exists() for p in paths):
        return None
    fds = [os.open(p, os.O_RDONLY) for p in paths]
    try:
        heads = [read_header(fd) for fd in fds]
        if heads[0].page_size != heads[1].page_size or heads[0].encoding != heads[1].encoding:
            return None
        if heads[0].auto_vacuum or heads[1].auto_vacuum:
            return None
        differ = differing_pages(fds[0], fds[1], heads[0].page_size, heads[0].pages, heads[1].pages)
        (new_leaves, new_other), (base_leaves, base_other) = (
            _layout(p, fd, h) for p, fd, h in zip(paths, fds, heads, strict=True)
        )
    except (ValueError, OSError, struct.error, IndexError, sqlite3.Error):
        return None
    finally:
        for fd in fds:
            os.close(fd)
    every_leaf = {p for t in (new_leaves, base_leaves) for p in (p for leaves in t.values() for p in leaves)}
    unexplained = {p for p in differ if p <= heads[1].pages} - every_leaf - new_other - base_other
    if unexplained or any(t not in new_leaves or t not in base_leaves for t in tables):
        return None
    new_out, base_out = {}, {}
    for table in tables:
        proven = {p for p in new_leaves[table].keys() & base_leaves[table].keys() if p not in differ}
        new_out[table] = _ranges(new_leaves[table], proven)
        base_out[table] = _ranges(base_leaves[table], proven)
    return Suspects(new_out, base_out, len(differ), heads[0].pages)
