from __future__ import annotations

import functools
import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.parsing.engine import Limits
from shared.parsing.errors import ParseError
from shared.runtime.polling import poll_until
from tests.unit.helpers import events_of, native_module, parse, parse_failure, parse_split_at

# Four-line and multi-line records, CRLF, quality lines starting with '@' and '+', a '+' line that
# repeats the title, a zero-length read, blank lines between records, no trailing newline.
QUIRKS = b"@r1 first read\nACGTN\n+\n@@+II\n@r2\r\nACG\r\nTTA\r\n+r2\r\n+@I\r\nIII\r\n\n@empty\n\n+\n\n@last\nGG\n+\n!~"


def test_records_with_qualities() -> None:
    records = parse(QUIRKS)
    assert [r["gene_name"] for r in records] == ["r1 first read", "r2", "empty", "last"]
    assert [r["sequence"] for r in records] == [b"ACGTN", b"ACGTTA", b"", b"GG"]
    assert [r["quality"] for r in records] == [b"@@+II", b"+@IIII", b"", b"!~"]
    assert [r["line_number"] for r in records] == [1, 5, 12, 16]


@pytest.mark.parametrize("cut", range(1, len(QUIRKS)))
def test_a_chunk_boundary_anywhere_changes_nothing(cut: int) -> None:
    assert parse_split_at(QUIRKS, cut) == parse(QUIRKS)


def test_gzip_fastq() -> None:
    assert parse(gzip.compress(QUIRKS), chunk=7, filename="reads.fastq.gz") == parse(QUIRKS)


@pytest.mark.parametrize(
    ("data", "code", "line"),
    [
        (b"@r\nACGT\n+\nIII\n", "truncated_record", 4),
        (b"@r\nACGT\n+\nIIIII\n", "quality_length", 4),
        (b"@r\nACGT\n", "truncated_record", 2),
        (b"@r\nACGT\n+\n", "truncated_record", 3),
        (b"@r\nACGT\n+other\nIIII\n", "plus_title_mismatch", 3),
        (b"@r\nAC GT\n+\nIIIII\n", "whitespace_in_sequence", 2),
        (b"@r\nACGT\n+\nII\x7fI\n", "invalid_quality", 4),
        (b"@r\nACXT\n+\nIIII\n", "invalid_character", 2),
        (b"@r\nACGT\n+\nIIII\nnot a header\n", "missing_header", 5),
    ],
)
def test_errors(data: bytes, code: str, line: int) -> None:
    with pytest.raises(ParseError) as err:
        parse(data)
    assert (err.value.code, err.value.line) == (code, line)


def test_long_reads_are_refused_not_held() -> None:
    with pytest.raises(ParseError) as err:
        parse(b"@r\n" + b"A" * 100 + b"\n+\n" + b"I" * 100 + b"\n", limits=Limits(max_read_bytes=50))
    assert err.value.code == "read_too_long"


def _fastq(reads: list[tuple[str, str]], width: int, crlf: bool) -> bytes:
    out = []
    for i, (seq, qual) in enumerate(reads):
        out.append(f"@read{i}")
        out.extend([seq[j : j + width] for j in range(0, len(seq), width)] or [""])
        out.append("+")
        out.extend([qual[j : j + width] for j in range(0, len(qual), width)] or [""])
    return ("\r\n" if crlf else "\n").join(out).encode() + b"\n"


reads = st.lists(
    st.integers(min_value=0, max_value=40).flatmap(
        lambda n: st.tuples(
            st.text(alphabet="ACGTN", min_size=n, max_size=n),
            st.text(alphabet="!#+5@I~", min_size=n, max_size=n),
        )
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(reads=reads, width=st.integers(min_value=1, max_value=50), crlf=st.booleans(), chunk=st.integers(1, 64))
def test_generated_files_parse_back_whatever_the_chunking(
    reads: list[tuple[str, str]], width: int, crlf: bool, chunk: int
) -> None:
    records = parse(_fastq(reads, width, crlf), chunk=chunk)
    assert [(r["sequence"].decode(), r["quality"].decode()) for r in records] == reads


def test_native_and_python_paths_give_the_same_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C loop for four-line records (shared/parsing/_native.c) against the Python one."""
    import random

    native = native_module()
    rng = random.Random(5)
    parts = []
    for i in range(500):
        kind = i % 7
        seq = "".join(rng.choice("ACGTNacgt") for _ in range(rng.choice([0, 1, 50, 151])))
        qual = "".join(rng.choice("!#+@I~") for _ in seq)
        title = f"r{i} lane {i % 3}" if kind != 5 else f"r{i} café"
        plus = title if kind == 2 else ""
        if kind == 3 and seq:  # multi-line
            parts.append(f"@{title}\n{seq[:20]}\n{seq[20:]}\n+\n{qual[:20]}\n{qual[20:]}\n")
        elif kind == 4:
            parts.append(f"@{title}\r\n{seq}\r\n+\r\n{qual}\r\n")
        elif kind == 6 and seq:
            parts.append(f"@{title}\n{seq[:3]}-{seq[3:]}\n+\n{qual[:3]}I{qual[3:]}\n")
        else:
            parts.append(f"@{title}\n{seq}\n+{plus}\n{qual}\n")
    data = "".join(parts).encode()
    for chunk in (5, 4096, 1 << 22):
        accelerated = events_of(data, chunk, "x.fq")
        with monkeypatch.context() as m:
            m.setattr(native, "accelerator", None)
            assert events_of(data, chunk, "x.fq") == accelerated


# Where a record the C loop does not take falls in its run of plain reads: on and beside the
# edges of its blocks (64 reads) and rounds (2048), and inside them.
_STOPS = (0, 63, 64, 65, 130, 2047, 2048, 2049, 3001, 4095)


def _reads_with_stops(count: int, odd: bytes) -> bytes:
    plain = [
        b"@r%d lane %d\n%s\n+\n%s\n" % (i, i % 3, (b"ACGTN"[i % 5 :] + b"ACGTN"[: i % 5]) * 30, b"I#5" * 50)
        for i in range(count)
    ]
    for at in _STOPS:
        plain[at] = odd.replace(b"@x", b"@r%d" % at, 1)
    return b"".join(plain)


@pytest.mark.parametrize(
    "odd",
    [
        b"@x caf\xc3\xa9\nACGT\n+\nIIII\n",  # a title the C loop leaves to Python, parsed there
        b"@x\r\nACGT\r\n+\r\nIIII\r\n",  # CRLF
        b"@x\nAC\nGT\n+\nII\nII\n",  # multi-line
        # These three stop the C loop's scan; this one passes it and stops its emission instead:
        # the C cleaning takes a gap for Python to judge.
        b"@x\nAC-GT\n+\nIIIII\n",
    ],
)
def test_long_runs_stopped_anywhere_in_a_round_match_the_python_path(
    monkeypatch: pytest.MonkeyPatch, odd: bytes
) -> None:
    """The C loop hashes blocks of a round on two threads and emits them in order as they are
    ready; a record it does not take ends the round there (found by its scan, or by its cleaning
    on either thread), whichever block either thread is on."""
    native = native_module()
    data = _reads_with_stops(5000, odd)
    for chunk in (1 << 22, 512 * 1024, 99_991):
        accelerated = events_of(data, chunk, "x.fq")
        assert len(accelerated) == 5000
        with monkeypatch.context() as m:
            m.setattr(native, "accelerator", None)
            assert events_of(data, chunk, "x.fq") == accelerated


@pytest.mark.parametrize("limit", [1, 64, 130, 2048, 2049, 4999])
def test_the_record_limit_falls_anywhere_in_a_round(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    native = native_module()
    data = _many_reads(5000)
    limits = Limits(max_records=limit)
    accelerated = parse_failure(data, 1 << 22, "x.fq", limits=limits)
    assert accelerated[0] == "too_many_records"
    with monkeypatch.context() as m:
        m.setattr(native, "accelerator", None)
        assert parse_failure(data, 1 << 22, "x.fq", limits=limits) == accelerated


def test_a_bad_quality_deep_in_a_round_is_reported_where_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    native = native_module()
    data = _many_reads(5000).replace(
        b"@r3001\n" + b"ACGT" * 38 + b"\n+\n" + b"I" * 152,
        b"@r3001\n" + b"ACGT" * 38 + b"\n+\n" + b"I" * 100 + b" " + b"I" * 51,
    )
    accelerated = parse_failure(data, 1 << 22, "x.fq")
    assert accelerated[1] == 3001 * 4 + 4
    with monkeypatch.context() as m:
        m.setattr(native, "accelerator", None)
        assert parse_failure(data, 1 << 22, "x.fq") == accelerated


def _many_reads(count: int) -> bytes:
    """Enough plain four-line reads for the C loop to hand rounds to its helper thread."""
    return b"".join(b"@r%d\n%s\n+\n%s\n" % (i, b"ACGT" * 38, b"I" * 152) for i in range(count))


def _helpers() -> set[str]:
    """Thread ids of the C loops' helper threads in this process (they name themselves)."""
    from pathlib import Path

    return {
        comm.parent.name
        for comm in Path("/proc/self/task").glob("*/comm")
        if comm.read_text().strip() == "engine-helper"
    }


def _all_ended(helpers: set[str]) -> bool:
    return not helpers & _helpers()


def test_a_thread_that_ends_takes_its_native_helper_with_it() -> None:
    """Each thread that runs the C loop keeps one helper thread; it must be joined when that thread ends."""
    import threading

    native_module()
    data = _many_reads(3000)
    expected = events_of(data, 1 << 20, "x.fq")
    assert _helpers(), "this thread's helper should be running"
    for _ in range(5):
        before = _helpers()
        seen: list[tuple[list[object], set[str]]] = []
        worker = threading.Thread(
            target=lambda out=seen: out.append((list(events_of(data, 1 << 20, "x.fq")), _helpers()))
        )
        worker.start()
        worker.join()
        [(events, during)] = seen
        assert events == expected
        # Other tests' threads may keep helpers of their own: only the worker's is followed.
        mine = during - before
        assert len(mine) == 1, "the worker had a helper of its own while it ran"
        # join() returns once the worker's Python thread state is gone; the thread-exit destructor
        # that stops the helper runs just after, as the OS thread ends.
        poll_until(functools.partial(_all_ended, mine), timeout=10, interval=0.01, what="the worker's helper joined")


def test_a_forked_child_parses_with_its_own_helper() -> None:
    """A child forked after the parent's helper started must not wait on a thread it does not have."""
    import os
    import pickle
    import select

    native_module()
    data = _many_reads(3000)
    expected = events_of(data, 1 << 20, "x.fq")  # this thread's helper is running now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse again and report the events, whatever happens
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps([tuple(e) for e in events_of(data, 1 << 20, "x.fq")]))
        finally:
            os._exit(0)
    os.close(write_end)
    received = b""
    try:
        while True:
            ready, _, _ = select.select([read_end], [], [], 30)
            assert ready, "the forked child hung in the C loop"
            part = os.read(read_end, 1 << 20)
            if not part:
                break
            received += part
    finally:
        os.close(read_end)
        if not received:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert pickle.loads(received) == [tuple(e) for e in expected]
