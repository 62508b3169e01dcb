"""The intake as ``create_app`` wires it, in process, on the run's Postgres, broker and object store:
its pool opened by the app's start, the key check, a registration, its status, the health check."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from services.intake.app import create_app
from shared.postgres.keys import PostgresKeys
from shared.runtime.settings import Settings
from shared.usecases.keys import create_key

pytestmark = pytest.mark.integration


def test_the_wired_intake_registers_an_upload_and_shows_it_to_its_owner_only(settings: Settings) -> None:
    name, other = f"wired-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    store = PostgresKeys.from_settings(settings)
    mine = {"Authorization": f"Bearer {create_key(store, name, admin=False)}"}
    theirs = {"Authorization": f"Bearer {create_key(store, other, admin=False)}"}
    with TestClient(create_app(settings)) as client:  # runs the app's start: the pool opens
        health = client.get("/healthz")
        assert health.json() == {"status": "ok", "checks": {"postgres": "ok", "rabbitmq": "ok", "s3": "ok"}}
        assert client.post("/uploads", json={"filename": "x.fa", "size": 8}).status_code == 401
        response = client.post("/uploads", json={"filename": "x.fa", "size": 8, "circular": True}, headers=mine)
        assert response.status_code == 201, response.text
        ticket = response.json()
        assert ticket["bucket"] == settings.uploads_bucket and ticket["key"] == f"{name}/{ticket['id']}/x.fa"
        assert ticket["upload_method"] == "PUT" and ticket["upload_url"]
        status = client.get(f"/uploads/{ticket['id']}", headers=mine)
        assert status.status_code == 200, status.text
        shown = status.json()
        assert (shown["state"], shown["registered"], shown["generation"], shown["source"]["size"]) == (
            "awaiting_upload", True, 0, 8
        )  # fmt: skip
        found = client.get("/uploads/lookup", params={"bucket": ticket["bucket"], "key": ticket["key"]}, headers=mine)
        assert found.status_code == 200 and found.json()["id"] == ticket["id"]
        assert client.get(f"/uploads/{ticket['id']}", headers=theirs).status_code == 404  # not theirs to see
        assert client.get(f"/uploads/{uuid.uuid4()}", headers=mine).status_code == 404
