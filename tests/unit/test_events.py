from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.domain.events import MalformedEvent, normalise_event

EVENTS = Path(__file__).parents[1] / "fixtures" / "events"


def load(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "key", "size", "etag"),
    [
        ("rgw-put.json", "plain/obj1.bin", 1048593, "2cda824a9d80f8e8f7e9bca2fa0704d7"),
        ("rgw-presigned-put.json", "presigned/obj2.txt", 20, "70552518d72698fb9789ceae4d3d0dc5"),
        ("rgw-multipart.json", "multipart/obj3.bin", 10486994, "87dfa4f595c7d531790ee428cc43e3f8-3"),
        ("rgw-copy.json", "copy/obj4.bin", 1048593, "2cda824a9d80f8e8f7e9bca2fa0704d7"),
    ],
)
def test_rgw_bodies(name: str, key: str, size: int, etag: str) -> None:
    (event,) = normalise_event(load(name))
    assert (event.bucket, event.key, event.size, event.etag) == ("rgwtest-ed1f4950", key, size, etag)
    assert event.sequencer and event.event_time is not None


def test_minio_key_is_url_decoded() -> None:
    body = load("minio-put.json")
    (event,) = normalise_event(body)
    assert event.key == "lab runs/run 1/reads+x.fa"
    assert f"{event.bucket}/{event.key}" == json.loads(body)["Key"]
    assert event.etag == "8acfdbcc9fea36557ad3c47d47cc8617"


def test_minio_multipart() -> None:
    (event,) = normalise_event(load("minio-multipart.json"))
    assert (event.key, event.size) == ("big/genome.fasta.gz", 1073741824)


def test_tagging_and_other_events_are_ignored() -> None:
    assert normalise_event(load("minio-tagging.json")) == []
    removed = json.loads(load("rgw-put.json"))
    removed["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    assert normalise_event(json.dumps(removed).encode()) == []


def test_quoted_etag_is_unquoted() -> None:
    body = json.loads(load("rgw-put.json"))
    body["Records"][0]["s3"]["object"]["eTag"] = '"abc"'
    (event,) = normalise_event(json.dumps(body).encode())
    assert event.etag == "abc"


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"Records": 3}', b'{"Records":[{"eventName":"s3:ObjectCreated:Put"}]}']
)
def test_malformed(body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        normalise_event(body)


def test_replay_event_round_trips_awkward_keys() -> None:
    from shared.domain.events import replay_event
    from tests.unit.fakes import make_upload

    key = "lab runs/a+b ü/x%20y.fa"
    (event,) = normalise_event(replay_event(make_upload(bucket="bucket", key=key, bytes_total=12, etag="etag1")))
    assert (event.bucket, event.key, event.size, event.etag) == ("bucket", key, 12, "etag1")
