"""``RecordReads`` in memory, over the records and parts the fake upload store holds.

``FakeRecords`` keeps the rules of ``PostgresRecords`` (``shared/postgres/records.py``): nothing is
read unless the upload is ``done`` at the generation asked for (``RecordsChanged``); sizes count
the fields' UTF-8 bytes and the inline residues and qualities asked for; a record's payloads are
given only when asked for. Both pass ``tests/contract/test_records_contract.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.domain.reads import RecordsChanged, RecordSize
from shared.domain.record_schema import Record
from shared.domain.uploads import State
from tests.unit.fakes import FakeUploads


@dataclass
class FakeRecords:
    """``RecordReads`` over ``uploads``; ``reads``: each call made, by name, in order (one a session)."""

    uploads: FakeUploads
    reads: list[str] = field(default_factory=list)

    def _records(self, upload_id: uuid.UUID, generation: int) -> list[Record]:
        upload = self.uploads.uploads.get(upload_id)
        if upload is None or upload.generation != generation or upload.state is not State.DONE:
            raise RecordsChanged(f"upload {upload_id} is not done at generation {generation}")
        return sorted(self.uploads.records.get(upload_id, []))

    def record_sizes(
        self,
        upload_id: uuid.UUID,
        generation: int,
        first: int,
        limit: int,
        name_prefix: str | None,
        *,
        residues: bool,
        quality: bool,
    ) -> list[RecordSize]:
        self.reads.append("record_sizes")
        found = [
            r
            for r in self._records(upload_id, generation)
            if r.ordinal >= first and (name_prefix is None or r.seq_id.startswith(name_prefix))
        ]
        return [
            RecordSize(
                r.ordinal,
                r.part_count,
                sum(len(text.encode()) for text in (r.gene_name, r.seq_id, r.description))
                + (len(json.dumps(r.attributes)) if r.attributes is not None else 0)
                + (len(r.residues) if residues and r.residues is not None else 0)
                + (len(r.quality) if quality and r.quality is not None else 0),
            )
            for r in found[:limit]
        ]

    def read_records(
        self, upload_id: uuid.UUID, generation: int, ordinals: Sequence[int], *, residues: bool, quality: bool
    ) -> list[Record]:
        self.reads.append("read_records")
        wanted = set(ordinals)
        found = [r for r in self._records(upload_id, generation) if r.ordinal in wanted]
        if len(found) != len(wanted):
            raise RecordsChanged(f"upload {upload_id} no longer holds these records")
        return [
            r._replace(residues=r.residues if residues else None, quality=r.quality if quality else None) for r in found
        ]

    def read_parts(
        self, upload_id: uuid.UUID, generation: int, ordinal: int, first_part: int, last_part: int
    ) -> list[bytes]:
        self.reads.append("read_parts")
        self._records(upload_id, generation)
        parts = sorted(
            p
            for p in self.uploads.parts.get(upload_id, [])
            if p.ordinal == ordinal and first_part <= p.part_no <= last_part
        )
        if len(parts) != last_part - first_part + 1:
            raise RecordsChanged(f"upload {upload_id} no longer holds these parts")
        return [p.residues.encode("ascii") for p in parts]
