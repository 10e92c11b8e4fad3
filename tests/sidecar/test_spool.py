"""The event spool on its own: FIFO across segments, a cursor that survives a restart, a bound."""

from __future__ import annotations

from pathlib import Path

from connectors.sidecar.spool import Spool


def values(n: int, start: int = 0) -> list[bytes]:
    return [f"event-{i:05d}".encode() * 3 for i in range(start, start + n)]


def drain(spool: Spool, per_batch: int = 7) -> list[bytes]:
    out: list[bytes] = []
    while spool.records:
        got, position = spool.peek(per_batch, 1 << 20)
        assert got
        out += got
        spool.commit(position, len(got))
    return out


def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    assert spool.append(values(50)) == 50
    assert len(list(tmp_path.glob("*.spool"))) > 5
    assert spool.append(values(10, 50)) == 10
    assert drain(spool) == values(60)
    assert spool.records == 0 and spool.size_bytes == 0
    assert not list(tmp_path.glob("*.spool"))  # delivered segments are deleted


def test_a_reopened_spool_resumes_at_its_cursor(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)
    spool.append(values(40))
    got, position = spool.peek(15, 1 << 20)
    spool.commit(position, len(got))
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)
    assert again.records == 25
    again.append(values(5, 40))  # after a restart, appends go to a new segment
    assert drain(again) == values(30, 15)[:25] + values(5, 40)


def test_a_torn_tail_is_skipped_and_later_appends_stay_readable(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(values(3))
    spool.close()
    tail = sorted(tmp_path.glob("*.spool"))[-1]
    with tail.open("ab") as f:
        f.write(b"\x00\x00\x01\x00half")  # a crash in the middle of a record
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.records == 3
    again.append(values(2, 3))
    assert drain(again) == values(5)


def test_the_bound_refuses_what_does_not_fit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    written = spool.append(values(100))
    assert 0 < written < 100
    assert spool.size_bytes <= 1000
    assert spool.append(values(1)) == 0
    assert drain(spool) == values(written)
    assert spool.append(values(1)) == 1  # room again once delivered
