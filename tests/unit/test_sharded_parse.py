"""A large FASTA parsed in shards, through the parser, persister and assembler handlers (fakes):
the same records, checksums, lines and document as a parse of the whole file, and the same batch
numbering whichever order the shards are parsed and committed in."""

from __future__ import annotations

import dataclasses
import gzip
import random
from collections.abc import Callable

import orjson
import pytest

from services.assembler.handler import AssemblerDeps, handle_assemble
from services.parser.handler import ParserDeps, handle_parse
from services.parser.handler import give_up as give_up_parse
from services.persister.handler import PersisterDeps, handle_persist
from shared.domain.messages import AssembleRequested, ParseCompleted, SequenceBatch, ShardRequested
from shared.domain.stages import GiveUp
from shared.domain.uploads import ParseErrorCode, PipelineErrorCode, State, Upload, result_key
from shared.runtime.settings import Settings
from tests.builders import bgzip
from tests.unit.fakes import FakeObjects, FakePublisher, FakeResults, FakeUploads
from tests.unit.helpers import parse, random_fasta

BASE = Settings(read_range_bytes=1000, part_bytes=1024, batch_bytes=3000, result_part_bytes=5 * 1024 * 1024)
BUCKET = BASE.uploads_bucket


class Run:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.uploads, self.objects, self.publisher = FakeUploads(), FakeObjects(), FakePublisher()
        self.parser = ParserDeps(settings, self.uploads, self.objects, self.publisher)
        self.results = FakeResults()

    def notify(self, data: bytes) -> Upload:
        handle_parse([self.objects.put(BUCKET, "owner/big.fa", data, "e1")], self.parser)
        (upload,) = self.uploads.uploads.values()
        return upload

    def take(self, kind: type) -> list:  # type: ignore[type-arg]
        taken = [m for m in self.publisher.messages if isinstance(m, kind)]
        self.publisher.messages = [m for m in self.publisher.messages if not isinstance(m, kind)]
        return taken

    def persist_and_assemble(self, upload: Upload, order: Callable[[list], list]) -> bytes:  # type: ignore[type-arg]
        persister = PersisterDeps(self.uploads, FakePublisher())
        for message in order(self.take(SequenceBatch) + self.take(ParseCompleted)):
            handle_persist(message, persister)
        handle_assemble(
            AssembleRequested(upload_id=upload.id, generation=upload.generation),
            AssemblerDeps(self.settings, self.uploads, self.results),
        )
        return self.results.documents[(self.settings.results_bucket, result_key(upload))]

    def batches(self, upload: Upload) -> list[tuple[int, int, int | None, int | None]]:
        return sorted((s, b, *r) for (uid, _, s, b), r in self.uploads.batch_records.items() if uid == upload.id)


def records_of(document: bytes) -> list[dict]:  # type: ignore[type-arg]
    return orjson.loads(document)["records"]  # type: ignore[no-any-return]


DATA = random_fasta(random.Random(3), 400)


def sharded(order: Callable[[list], list]) -> tuple[Run, Upload, bytes]:  # type: ignore[type-arg]
    run = Run(BASE.model_copy(update={"shard_bytes": 20_000}))
    upload = run.notify(DATA)
    requests = run.take(ShardRequested)
    assert [r.shard for r in requests] == list(range(len(requests))) and len(requests) > 3
    assert run.uploads.uploads[upload.id].state is State.PARSING
    for request in order(requests):
        handle_parse(request, run.parser)
    return run, upload, run.persist_and_assemble(upload, order)


def test_shards_give_the_document_of_a_whole_parse_and_the_same_batches_in_any_order() -> None:
    whole = Run(BASE)
    upload = whole.notify(DATA)
    assert whole.take(ShardRequested) == []  # sharding is off by default
    whole_document = whole.persist_and_assemble(upload, lambda m: m)

    in_order, first, document = sharded(lambda m: m)
    shuffled, second, other = sharded(lambda m: random.Random(5).sample(m, len(m)))
    assert records_of(document) == records_of(whole_document) == records_of(other)
    expected = parse(DATA, fmt="fasta")
    assert [(r["line_number"], r["md5"]) for r in records_of(document)] == [
        (r["line_number"], r["md5"]) for r in expected
    ]
    # Batches are numbered within their shard: the same numbers whatever order shards ran in.
    assert in_order.batches(first) == shuffled.batches(second)
    assert len({shard for shard, *_ in in_order.batches(first)}) > 3
    for run, upload in ((in_order, first), (shuffled, second)):
        done = run.uploads.uploads[upload.id]
        assert done.state is State.DONE and done.records_total == len(expected)
        # The object's digests were taken while the shards were planned.
        assert done.source_md5 is not None and done.source_sha256 is not None
    trailer = orjson.loads(document)
    assert trailer["collection_digest"] == orjson.loads(whole_document)["collection_digest"]


def test_a_bgzip_fasta_splits_through_its_blocks_and_gives_the_records_of_the_plain_file() -> None:
    run = Run(BASE.model_copy(update={"shard_bytes": 20_000}))
    packed = bgzip(DATA)
    upload = run.notify(packed)
    requests = run.take(ShardRequested)
    plan = run.uploads.shard_plan(upload.id, 1)
    assert len(requests) == len(plan) > 3 and all(shard.bgzf for shard in plan)
    assert any(shard.skip for shard in plan)  # shards that start inside a block
    for request in reversed(requests):
        handle_parse(request, run.parser)
    document = run.persist_and_assemble(upload, lambda m: m)
    assert records_of(document) == records_of(sharded(lambda m: m)[2])
    assert orjson.loads(document)["format"] == "fasta.gz"
    assert run.uploads.uploads[upload.id].bytes_done == len(packed)


def test_a_shard_requested_again_is_parsed_again_and_its_batches_skipped() -> None:
    run = Run(BASE.model_copy(update={"shard_bytes": 20_000}))
    upload = run.notify(DATA)
    requests = run.take(ShardRequested)
    for request in [*requests, requests[1], requests[2]]:  # two redelivered
        handle_parse(request, run.parser)
    document = run.persist_and_assemble(upload, lambda m: m)
    assert records_of(document) == records_of(sharded(lambda m: m)[2])
    # A redelivered notification republishes the saved plan; it does not read the object again.
    reads = []
    run.objects.on_read = reads.append
    handle_parse([run.objects.put(BUCKET, "owner/big.fa", DATA, "e1")], run.parser)
    assert reads == []


def test_a_bad_record_in_a_later_shard_fails_the_upload_at_its_position_in_the_file() -> None:
    data = bytearray(DATA)
    at = data.index(b"ACG", len(data) * 4 // 5)
    data[at] = ord("!")
    run = Run(BASE.model_copy(update={"shard_bytes": 20_000}))
    upload = run.notify(bytes(data))
    for request in run.take(ShardRequested):
        handle_parse(request, run.parser)
    failed = run.uploads.uploads[upload.id]
    whole = Run(BASE)
    expected = whole.uploads.uploads[whole.notify(bytes(data)).id].failure
    assert failed.state is State.FAILED and failed.failure is not None and expected is not None
    assert failed.failure.code is ParseErrorCode.INVALID_CHARACTER
    assert (failed.failure.line, failed.failure.column) == (expected.line, expected.column)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"@r\nACGT\n+\nIIII\n" * 3000, id="fastq"),
        pytest.param(b"\n" + DATA, id="blank line before the first header"),
        pytest.param(b">one\n" + b"ACGT" * 20_000 + b"\n", id="one record"),
        pytest.param(gzip.compress(DATA), id="plain gzip"),
    ],
)
def test_what_does_not_split_is_parsed_whole(data: bytes) -> None:
    run = Run(BASE.model_copy(update={"shard_bytes": 20_000}))
    upload = run.notify(data)
    assert run.take(ShardRequested) == [] and run.uploads.shard_plan(upload.id, 1) == []
    assert any(isinstance(m, ParseCompleted) and m.shard_count == 1 for m in run.publisher.messages)


def test_a_shard_of_a_replaced_generation_is_not_parsed() -> None:
    run = Run(BASE.model_copy(update={"shard_bytes": 20_000}))
    upload = run.notify(DATA)
    requests = run.take(ShardRequested)
    run.objects.put(BUCKET, "owner/big.fa", DATA + b">x\nA\n", "e2")
    handle_parse([run.objects.put(BUCKET, "owner/big.fa", DATA + b">x\nA\n", "e2")], run.parser)
    run.publisher.messages.clear()
    handle_parse(requests[0], run.parser)
    assert run.publisher.messages == [] and run.uploads.uploads[upload.id].generation == 2


def test_shard_batches_add_their_own_bytes_so_progress_counts_each_byte_once() -> None:
    run = Run(BASE.model_copy(update={"shard_bytes": 20_000}))
    upload = run.notify(DATA)
    for request in reversed(run.take(ShardRequested)):
        handle_parse(request, run.parser)
    batches = run.take(SequenceBatch)
    assert sum(batch.source_bytes or 0 for batch in batches) == len(DATA)
    persister = PersisterDeps(run.uploads, FakePublisher())
    for batch in batches[: len(batches) // 2]:  # the later shards' half: their offsets are the highest
        handle_persist(batch, persister)
    done = run.uploads.uploads[upload.id].bytes_done
    assert done == sum(batch.source_bytes or 0 for batch in batches[: len(batches) // 2]) < len(DATA)


def test_a_shard_that_keeps_failing_fails_its_upload_when_dead_lettered() -> None:
    run = Run(BASE.model_copy(update={"shard_bytes": 20_000}))
    upload = run.notify(DATA)
    request = run.take(ShardRequested)[2]
    give_up_parse(request, GiveUp("the parse stage failed 5 times; see the parse log", "e1"), run.parser)
    failed = run.uploads.uploads[upload.id]
    assert failed.state is State.FAILED and failed.failure is not None
    assert (failed.failure.code, failed.failure.error_id) == (PipelineErrorCode.PROCESSING_FAILED, "e1")
    assert run.uploads.shard_plan(upload.id, 1) == []  # the rows and the plan went with the failure
    handle_parse(request, run.parser)  # a copy still queued: its generation failed, nothing is parsed
    assert not any(isinstance(m, SequenceBatch) for m in run.publisher.messages)


def test_a_plan_the_parse_disagrees_with_is_an_error_not_a_result() -> None:
    """Were the planned record count wrong, the shard's parse raises (retried, then dead-lettered)
    instead of ending a shard with records missing or doubled."""
    run = Run(BASE.model_copy(update={"shard_bytes": 20_000}))
    upload = run.notify(DATA)
    requests = run.take(ShardRequested)
    key = (upload.id, 1)
    run.uploads.shards[key][1] = dataclasses.replace(run.uploads.shards[key][1], records=1)
    with pytest.raises(RuntimeError, match="records planned"):
        handle_parse(requests[1], run.parser)


def test_whole_or_in_shards_is_decided_once_per_generation_whatever_each_parser_is_set_to() -> None:
    """A parser set not to split follows a saved plan, and one set to split does not split a
    generation whose parse began whole: the two modes number batches differently."""
    run = Run(BASE.model_copy(update={"shard_bytes": 20_000}))
    run.notify(DATA)
    planned = run.take(ShardRequested)
    whole_parser = ParserDeps(BASE, run.uploads, run.objects, run.publisher)  # shard_bytes 0
    handle_parse([run.objects.put(BUCKET, "owner/big.fa", DATA, "e1")], whole_parser)
    assert run.take(ShardRequested) == planned and run.take(SequenceBatch) == []

    other = Run(BASE)  # parsed whole; its parser dies (the notification is redelivered)
    begun = other.notify(DATA)
    assert other.take(ShardRequested) == [] and other.take(SequenceBatch)
    splitting = ParserDeps(
        BASE.model_copy(update={"shard_bytes": 20_000}), other.uploads, other.objects, other.publisher
    )
    handle_parse([other.objects.put(BUCKET, "owner/big.fa", DATA, "e1")], splitting)
    assert other.take(ShardRequested) == [] and other.uploads.shard_plan(begun.id, 1) == []
    assert other.take(SequenceBatch)  # parsed whole again, numbered as before
