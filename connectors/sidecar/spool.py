"""A bounded on-disk FIFO of encoded request events: what Kafka could not take, in order.

The producer holds a batch only for its request timeout; an outage longer
than that used to lose every event of it (897 of 2,000 in a 320 s outage).
The reporter writes what it could not deliver here and, while anything is
here, everything newer too, so the spool is one ordered queue; when Kafka
answers again it sends from the head and advances a cursor only after the
broker acknowledged. Records are length-prefixed values in numbered segment
files; a segment is deleted once it is fully delivered, and the cursor is a
small file, so a restarted sidecar (same `--spool-dir`) delivers what an
earlier one left. Writes are flushed to the OS per append (they survive the
process, not the machine). The bound is on bytes: past it, `append` refuses
and the caller counts and reports what was refused.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

_LENGTH = struct.Struct(">I")
_SUFFIX = ".spool"
_CURSOR = "cursor.json"


@dataclass(frozen=True)
class Position:
    """Where the next unread record starts: a segment number and a byte offset in it."""

    segment: int
    offset: int


class Spool:
    """Append-only segments of `[u32 length][value]` records under `directory`, read in order."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 16 << 20) -> None:
        if max_bytes < 1 or segment_bytes < 1:
            raise ValueError("max_bytes and segment_bytes must be positive")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._segments = sorted(int(p.stem) for p in directory.glob(f"*{_SUFFIX}"))
        self._sizes = {n: self._path(n).stat().st_size for n in self._segments}
        self._cursor = self._load_cursor()
        self._writer: BinaryIO | None = None
        self._new_tail = True  # never append to a segment an earlier process may have torn
        self.records = self._count_unread()

    # -- state ------------------------------------------------------------------------------
    @property
    def size_bytes(self) -> int:
        """Bytes on disk (delivered records of the head segment included until it is deleted)."""
        return sum(self._sizes.values())

    def __len__(self) -> int:
        return self.records

    # -- writing ----------------------------------------------------------------------------
    def append(self, values: list[bytes]) -> int:
        """Append `values` in order until the bound; returns how many were written."""
        written = 0
        total = self.size_bytes
        for value in values:
            size = _LENGTH.size + len(value)
            if total + size > self.max_bytes:
                break
            writer = self._tail_writer(size)
            writer.write(_LENGTH.pack(len(value)))
            writer.write(value)
            self._sizes[self._segments[-1]] += size
            total += size
            written += 1
        if written:
            assert self._writer is not None
            self._writer.flush()
            self.records += written
        return written

    def _tail_writer(self, size: int) -> BinaryIO:
        tail = self._segments[-1] if self._segments else None
        full = (
            tail is not None and self._sizes[tail] and self._sizes[tail] + size > self.segment_bytes
        )
        if tail is None or full or self._new_tail:
            self._new_tail = False
            if self._writer is not None:
                self._writer.close()
            tail = (tail or 0) + 1
            self._segments.append(tail)
            self._sizes[tail] = 0
            self._writer = self._path(tail).open("ab")
        elif self._writer is None:
            self._writer = self._path(tail).open("ab")
        return self._writer

    # -- reading ----------------------------------------------------------------------------
    def peek(self, max_records: int, max_bytes: int) -> tuple[list[bytes], Position]:
        """Up to `max_records` unread values (at least one, at most ~`max_bytes` in all), and
        the position after them, to `commit` once they are delivered."""
        values: list[bytes] = []
        position = self._cursor
        taken = 0
        for segment in self._segments:
            if segment < position.segment:
                continue
            offset = position.offset if segment == position.segment else 0
            with self._path(segment).open("rb") as f:
                f.seek(offset)
                while len(values) < max_records:
                    head = f.read(_LENGTH.size)
                    if len(head) < _LENGTH.size:
                        break  # end of this segment (or a torn tail: written again later)
                    (length,) = _LENGTH.unpack(head)
                    if values and taken + length > max_bytes:
                        return values, Position(segment, offset)
                    value = f.read(length)
                    if len(value) < length:
                        break
                    values.append(value)
                    taken += length
                    offset += _LENGTH.size + length
            position = Position(segment, offset)
            if len(values) >= max_records:
                break
        return values, position

    def commit(self, position: Position, count: int) -> None:
        """`count` records up to `position` were delivered: move the cursor, drop finished
        segments."""
        for segment in list(self._segments):
            if segment >= position.segment:
                break
            self._remove(segment)
        self._cursor = position
        self.records = max(0, self.records - count)
        if self.records == 0:  # everything delivered: start over with no segment at all
            for segment in list(self._segments):
                self._remove(segment)
            self._cursor = Position(0, 0)
        self._save_cursor()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- files ------------------------------------------------------------------------------
    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:012d}{_SUFFIX}"

    def _remove(self, segment: int) -> None:
        if self._writer is not None and segment == self._segments[-1]:
            self._writer.close()
            self._writer = None
        self._path(segment).unlink(missing_ok=True)
        self._segments.remove(segment)
        del self._sizes[segment]

    def _load_cursor(self) -> Position:
        try:
            raw = orjson.loads((self.directory / _CURSOR).read_bytes())
            position = Position(int(raw["segment"]), int(raw["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            position = Position(0, 0)
        if self._segments and position.segment < self._segments[0]:
            position = Position(self._segments[0], 0)
        return position

    def _save_cursor(self) -> None:
        path = self.directory / _CURSOR
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(
            orjson.dumps({"segment": self._cursor.segment, "offset": self._cursor.offset})
        )
        os.replace(tmp, path)

    def _count_unread(self) -> int:
        count = 0
        position = self._cursor
        for segment in self._segments:
            if segment < position.segment:
                continue
            with self._path(segment).open("rb") as f:
                f.seek(position.offset if segment == position.segment else 0)
                while (head := f.read(_LENGTH.size)) and len(head) == _LENGTH.size:
                    (length,) = _LENGTH.unpack(head)
                    if len(f.read(length)) < length:
                        break
                    count += 1
        return count
