"""One large FASTA over several parsers: planned once, its shards parsed by two parser processes
at once, and the result checked against a run with one parser and against an independent reader.

The parsers here split at 256 KiB (``GENOBASE_SHARD_BYTES``) and cut batches at 64 KiB, so a
2.7 MB file makes six shards of several batches each, with a record of 1.2 MB (two stored
parts) that crosses shard targets. The batch numbering (shard, batch, records through) is the
plan's, whichever parser took which shard: the single-parser run must give the same list.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from genobase import stack
from shared.postgres.connection import connect
from shared.runtime.polling import poll_until
from shared.runtime.settings import Settings
from tests.builders import bgzip
from tests.conftest import Pipeline
from tests.helpers import assert_same_records, download, upload_via_intake
from tests.reference import fasta_records

pytestmark = pytest.mark.e2e
SHARDING = {"GENOBASE_SHARD_BYTES": str(256 * 1024), "GENOBASE_BATCH_BYTES": str(64 * 1024)}
PARSER_2 = stack.instance_names("parser", 2)[1]


def large_fasta(seed: int) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(600):
        length = 1_200_000 if i == 250 else rng.choice([0, 7, 60, 500, 3000, 9000])
        residues = "".join(rng.choices("ACGTN", k=length))
        width = rng.choice([60, 80])
        out.append(f">s{i} sample {i}\n" + "".join(residues[j : j + width] + "\n" for j in range(0, length, width)))
    return "".join(out).encode()


DATA = large_fasta(1)


@pytest.fixture
def sharding_parser(pipeline: Pipeline) -> Iterator[None]:
    """The run's parser restarted to split large FASTA files; restored afterwards."""
    pipeline.processes.stop("parser")
    try:
        pipeline.start_consuming("parser", SHARDING)
        yield
    finally:
        pipeline.processes.stop(PARSER_2)
        pipeline.processes.stop("parser")
        pipeline.start_consuming("parser")


def start_second_parser(pipeline: Pipeline, extra: dict[str, str] | None = None) -> int:
    return pipeline.start_consuming(
        PARSER_2, {**SHARDING, "GENOBASE_METRICS_PORT": str(stack.free_port()), **(extra or {})}
    )


def stored(settings: Settings, upload_id: str) -> dict[str, Any]:
    """What Postgres holds of the upload: its shards, batches and records."""
    with connect(settings, autocommit=True) as conn:
        shards = conn.execute(
            "SELECT shard, start_offset, end_offset, first_ordinal, first_line, records, bgzf, skip_bytes, "
            "content_bytes, batch_count, parsed_at "
            "FROM upload_shards WHERE upload_id = %s ORDER BY shard",
            (upload_id,),
        ).fetchall()
        batches = conn.execute(
            "SELECT shard, batch_no, records_through FROM upload_batches WHERE upload_id = %s ORDER BY shard, batch_no",
            (upload_id,),
        ).fetchall()
        records = conn.execute(
            "SELECT ordinal, line_number, seq_id, length, part_count, md5, refget FROM sequence_records "
            "WHERE upload_id = %s ORDER BY ordinal",
            (upload_id,),
        ).fetchall()
    return {"shards": shards, "batches": [tuple(b.values()) for b in batches], "records": records}


def parsed_shards(pipeline: Pipeline, name: str, upload_id: str) -> set[int]:
    """The shards of the upload that process ``name`` logged as parsed."""
    found = set()
    for line in pipeline.processes.log_file(name).read_bytes().splitlines():
        if upload_id.encode() in line and b'"event": "parsed"' in line:
            found.add(orjson.loads(line)["shard"])
    return found


def run_upload(
    pipeline: Pipeline, settings: Settings, data: bytes = DATA, suffix: str = ".fa"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    ticket = upload_via_intake(pipeline, f"big-{uuid.uuid4().hex[:8]}{suffix}", data)
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", status
    return status, download(status), stored(settings, ticket["id"])


def test_a_fasta_split_over_two_parsers_gives_what_one_parser_gives(
    pipeline: Pipeline, settings: Settings, sharding_parser: None
) -> None:
    start_second_parser(pipeline)
    status, document, rows = run_upload(pipeline, settings)
    expected = fasta_records(DATA)
    assert_same_records(document, expected)  # ordinals, lines, names, residues, MD5 and refget
    assert document["record_count"] == len(expected) == status["progress"]["records_total"]
    assert status["progress"]["bytes_done"] == len(DATA) == status["progress"]["bytes_total"]
    shards = rows["shards"]
    assert len(shards) >= 5 and all(s["parsed_at"] is not None for s in shards)
    assert [s["start_offset"] for s in shards[1:]] == [s["end_offset"] for s in shards[:-1]]
    assert shards[-1]["end_offset"] == len(DATA) and sum(s["records"] for s in shards) == len(expected)
    assert len(rows["batches"]) > len(shards)  # several batches in a shard
    # Both parsers took shards: the file really was parsed by two processes.
    by_first = parsed_shards(pipeline, "parser", status["id"])
    by_second = parsed_shards(pipeline, PARSER_2, status["id"])
    assert by_first and by_second and by_first | by_second == set(range(len(shards)))
    # The whole object's digests were taken while planning.
    assert document["source"]["md5"] is not None and document["source"]["sha256"] is not None

    pipeline.processes.stop(PARSER_2)  # one parser: every shard parsed by the same process
    single_status, single_document, single_rows = run_upload(pipeline, settings)
    assert parsed_shards(pipeline, "parser", single_status["id"]) == set(range(len(shards)))
    assert single_rows["batches"] == rows["batches"]
    assert single_rows["records"] == rows["records"]
    assert [{k: v for k, v in s.items() if k != "parsed_at"} for s in single_rows["shards"]] == [
        {k: v for k, v in s.items() if k != "parsed_at"} for s in shards
    ]
    assert single_document["records"] == document["records"]
    for field in ("record_count", "collection_digest", "duplicate_names", "empty_sequences", "format"):
        assert single_document[field] == document[field]


def test_a_bgzip_fasta_is_split_through_its_blocks(
    pipeline: Pipeline, settings: Settings, sharding_parser: None
) -> None:
    start_second_parser(pipeline)
    packed = bgzip(DATA)
    status, document, rows = run_upload(pipeline, settings, packed, ".fa.gz")
    assert_same_records(document, fasta_records(DATA))
    assert document["format"] == "fasta.gz" and status["progress"]["bytes_done"] == len(packed)
    shards = rows["shards"]
    assert len(shards) >= 5 and all(s["bgzf"] for s in shards) and any(s["skip_bytes"] for s in shards)
    assert sum(s["content_bytes"] for s in shards) == len(DATA)
    assert parsed_shards(pipeline, "parser", status["id"]) and parsed_shards(pipeline, PARSER_2, status["id"])


def test_a_shard_whose_parser_is_killed_is_parsed_by_the_other(
    pipeline: Pipeline, settings: Settings, sharding_parser: None
) -> None:
    """The second parser SIGKILLs itself after its second batch (a failpoint): the shard it held
    goes back to the queue unacknowledged and the first parser parses it."""
    pid = start_second_parser(pipeline, {"GENOBASE_FAILPOINT": "parser.after_batch:2"})
    ticket = upload_via_intake(pipeline, "killed.fa", DATA)
    status = pipeline.wait_for(ticket["id"])
    assert status["state"] == "done", status
    poll_until(
        lambda: pipeline.processes.pid(PARSER_2) is None,
        timeout=10,
        interval=0.2,
        what="the second parser ended at its failpoint",
    )
    assert_same_records(download(status), fasta_records(DATA))
    rows = stored(settings, ticket["id"])
    assert len(rows["shards"]) >= 5 and parsed_shards(pipeline, PARSER_2, ticket["id"]) == set()
    assert parsed_shards(pipeline, "parser", ticket["id"]) == set(range(len(rows["shards"])))
    assert pid > 0
