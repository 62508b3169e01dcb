"""Every list derived from the record definition, and the domain's sets, agree with their source."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest

from services.assembler import document
from shared.domain.messages import RecordColumns, SequenceParts
from shared.domain.record_schema import DOCUMENT_FIELDS, PART, RECORD, Record
from shared.domain.uploads import (
    ALL_STATES,
    ERROR_CODES,
    GENERATION_RESET,
    LIVE,
    TERMINAL,
    TRANSITIONS,
    ClaimAction,
    ObjectCreated,
    ParseErrorCode,
    PipelineErrorCode,
    State,
    Upload,
    decide_claim,
    next_states,
)
from shared.postgres import sequences
from tests.unit.fakes import make_upload

ROOT = Path(__file__).resolve().parents[2]
SQL_FOR_PYTHON = {int: {"int4", "int8"}, str: {"text", "bytea"}, dict: {"jsonb"}}


def test_every_field_has_a_column_of_a_matching_type() -> None:
    for schema in (RECORD, PART):
        for name in schema.fields:
            python = schema.python_types[name]
            base = next(a for a in (*get_args(python), python) if a in SQL_FOR_PYTHON or getattr(a, "__origin__", None))
            base = getattr(base, "__origin__", base)
            assert schema.columns[name].sql in SQL_FOR_PYTHON[base], name


def test_derived_lists_follow_the_definition() -> None:
    assert tuple(RecordColumns.model_fields) == RECORD.fields == Record._fields
    assert tuple(SequenceParts.model_fields) == PART.fields
    assert len({key for _, key, _ in DOCUMENT_FIELDS}) == len(DOCUMENT_FIELDS)
    assert [RECORD.fields[i] for i, _, _ in DOCUMENT_FIELDS] == [
        n for n in RECORD.fields if RECORD.columns[n].document is not None
    ]
    assert document.DOCUMENT_FIELDS is DOCUMENT_FIELDS
    assert sequences.RECORD is RECORD and sequences.PART is PART


def test_no_module_lists_the_record_fields_by_hand() -> None:
    """A second hand-written list of the fields is what this definition exists to prevent."""
    names = "|".join(RECORD.fields)
    row = re.compile(rf"\b({names})\b\s*,\s*\b({names})\b\s*,\s*\b({names})\b\s*,\s*\b({names})\b")
    allowed = {ROOT / "shared" / "record_schema.py"}
    for path in [*ROOT.glob("shared/**/*.py"), *ROOT.glob("services/**/*.py")]:
        if path not in allowed and "parsing" not in path.parts:
            assert not row.search(path.read_text()), f"{path} lists record fields by hand"


def test_the_states_of_the_schema_are_the_enum() -> None:
    """The state check of the last migration that sets it lists exactly the domain's states."""
    checks = [
        found
        for path in sorted((ROOT / "shared/postgres/migrations").glob("*.sql"))
        for found in re.findall(r"CHECK \(state IN\s*\(([^)]*)\)\)", path.read_text())
    ]
    assert checks
    assert {s.strip().strip("'") for s in checks[-1].split(",")} == {s.value for s in State}


def test_state_sets_and_moves() -> None:
    assert LIVE | TERMINAL | {State.AWAITING_UPLOAD} == ALL_STATES and not LIVE & TERMINAL
    # only a new object changes a finished upload (refused, ``revoked``, if its owner's keys are)
    assert next_states(State.DONE) == {State.QUEUED, State.REVOKED, State.DELETED}
    # a late object is still processed
    assert next_states(State.EXPIRED) == {State.QUEUED, State.REVOKED, State.DELETED}
    assert State.EXPIRED in next_states(State.AWAITING_UPLOAD)
    assert next_states(State.FAILED) == {State.QUEUED, State.REVOKED, State.DELETED}
    # a delete ends an upload from anywhere, and nothing moves a deleted one: no late message of any
    # stage, no object written at its key again
    assert all(State.DELETED in next_states(state) for state in ALL_STATES - {State.DELETED})
    assert next_states(State.DELETED) == frozenset()
    assert State.FAILED in next_states(State.AWAITING_UPLOAD)
    assert next_states(State.ASSEMBLING) >= {State.DONE, State.FAILED}
    # only a validation (which stores nothing to assemble) goes from parsing to done
    assert [t.name for t in TRANSITIONS if t.allows(State.PARSING) and t.target is State.DONE] == ["finish_validation"]


def test_a_new_generation_resets_exactly_the_per_generation_fields() -> None:
    assert {"records_done", "error_code", "result_key", "pickups", "finished_at"} <= set(GENERATION_RESET)
    assert not {"id", "bucket", "key", "generation", "etag", "created_at"} & set(GENERATION_RESET)


def _event(etag: str, hours: float = 0) -> ObjectCreated:
    return ObjectCreated(
        bucket="b", key="k", size=1, etag=etag, event_time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=hours)
    )


@pytest.mark.parametrize(
    ("state", "etag", "hours", "action"),
    [
        (State.QUEUED, "e", 0, ClaimAction.PARSE),  # a redelivery before parsing finished
        (State.PARSING, "e", 0, ClaimAction.PARSE),
        (State.PERSISTING, "e", 0, ClaimAction.DUPLICATE),
        (State.DONE, "e", 0, ClaimAction.DUPLICATE),
        (State.DONE, "older", -1, ClaimAction.STALE),
        (State.DONE, "newer", 1, ClaimAction.PARSE),
        (State.FAILED, "newer", 1, ClaimAction.PARSE),
    ],
)
def test_claim_decisions(state: State, etag: str, hours: float, action: ClaimAction) -> None:
    upload = make_upload(state=state, etag="e", event_time=datetime(2026, 1, 1, tzinfo=UTC))
    assert decide_claim(upload, _event(etag, hours)).action is action
    assert decide_claim(None, _event(etag)).action is ClaimAction.PARSE


def test_registered_upload_gets_its_first_generation() -> None:
    waiting = make_upload(state=State.AWAITING_UPLOAD, etag=None, generation=0)
    assert decide_claim(waiting, _event("e1")).action is ClaimAction.PARSE


def test_error_codes_are_unique_and_every_engine_error_uses_one() -> None:
    assert len(set(ERROR_CODES)) == len(ERROR_CODES) == len(ParseErrorCode) + len(PipelineErrorCode)
    raised = 0
    for path in ROOT.glob("shared/parsing/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ParseError":
                code = ast.unparse(node.args[0])
                assert code.startswith("ParseErrorCode"), f"{path.name}: ParseError({code}, ...)"
                raised += 1
    assert raised > 10, f"only {raised} ParseError calls found in shared/parsing: the search is broken"


def test_upload_failure_is_typed() -> None:
    failed = make_upload(state=State.FAILED, error_code="invalid_character", error_line=3)
    assert failed.failure is not None and failed.failure.code is ParseErrorCode.INVALID_CHARACTER
    assert make_upload(state=State.DONE).failure is None
    assert Upload.from_row({**make_upload().__dict__, "state": "done", "unknown_column": 1}).state is State.DONE
