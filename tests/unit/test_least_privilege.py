"""What each service and owner is given: the pure rules (the stack applies them in tests/security)."""

from __future__ import annotations

from genobase import stack
from shared.runtime.settings import Settings
from shared.s3.users import OBJECT_ACTIONS, S3_SERVICES, Grant, _sid, _sid_prefix, owner_grants, service_grants

VALUES = {
    "GENOBASE_PG_DSN": "postgresql://genobase_app:rt@127.0.0.1/genobase",
    "GENOBASE_PG_OWNER_DSN": "postgresql://genobase:owner@127.0.0.1/genobase",
    "GENOBASE_PG_PASSWORD": "owner",
    "GENOBASE_PG_RUNTIME_PASSWORD": "rt",
    "GENOBASE_AMQP_URL": "amqp://genobase:pw@127.0.0.1:5672/genobase",
    "GENOBASE_RABBITMQ_PASSWORD": "pw",
    "GENOBASE_RABBITMQ_RGW_PASSWORD": "rgwpw",
    "GENOBASE_S3_ACCESS_KEY": "ADMIN",
    "GENOBASE_S3_SECRET_KEY": "admin-secret",
    "GENOBASE_API_KEY": "gbk_admin",
    "GENOBASE_PARSER_S3_ACCESS_KEY": "PARSER",
    "GENOBASE_PARSER_S3_SECRET_KEY": "parser-secret",
    "GENOBASE_ASSEMBLER_S3_ACCESS_KEY": "ASSEMBLER",
    "GENOBASE_ASSEMBLER_S3_SECRET_KEY": "assembler-secret",
    "GENOBASE_INTAKE_S3_ACCESS_KEY": "INTAKE",
    "GENOBASE_INTAKE_S3_SECRET_KEY": "intake-secret",
    "GENOBASE_WATCHDOG_S3_ACCESS_KEY": "WATCHDOG",
    "GENOBASE_WATCHDOG_S3_SECRET_KEY": "watchdog-secret",
    "GENOBASE_DOWNLOADS_S3_ACCESS_KEY": "DOWNLOADS",
    "GENOBASE_DOWNLOADS_S3_SECRET_KEY": "downloads-secret",
    "GENOBASE_UPLOADS_BUCKET": "uploads",
}


def test_each_service_gets_its_own_s3_keys_and_no_other_secret() -> None:
    for service in stack.SERVICES:
        given = stack.service_settings(service, VALUES)
        assert given["GENOBASE_PG_DSN"] == VALUES["GENOBASE_PG_DSN"]  # the runtime role only
        assert given["GENOBASE_UPLOADS_BUCKET"] == "uploads"
        text = "\n".join(given.values())
        for secret in ("owner", "admin-secret", "gbk_admin", "rgwpw", "ADMIN"):
            assert secret not in text.split("\n"), (service, secret)
        second = stack.SECOND_S3_USERS.get(service)
        own = {s for s in S3_SERVICES if s not in (service, second)}
        for other in own:
            assert f"{other}-secret" not in text, (service, other)
        if service in S3_SERVICES:
            assert given["GENOBASE_S3_SECRET_KEY"] == f"{service}-secret"
        else:
            assert "GENOBASE_S3_SECRET_KEY" not in given  # persister and refget use no S3
        if second is not None:
            assert given["GENOBASE_S3_DOWNLOAD_SECRET_KEY"] == f"{second}-secret"
        else:
            assert "GENOBASE_S3_DOWNLOAD_SECRET_KEY" not in given


def _actions(grants: tuple[Grant, ...]) -> set[tuple[str, str, str]]:
    return {(a, r, g.effect) for g in grants for a in g.actions for r in g.resources}


def test_service_grants_are_what_each_does() -> None:
    grants = service_grants("up", "res")
    allowed = {svc: {(a, r) for a, r, e in _actions(gs) if e == "Allow"} for svc, gs in grants.items()}
    assert allowed["parser"] == {("s3:GetObject", "up/*")}
    assert ("s3:PutObject", "res/*") in allowed["assembler"]
    assert not any(r.startswith("up") for _, r in allowed["assembler"])  # never touches uploads
    assert ("s3:PutObject", "up/*") in allowed["intake"]
    assert not any(a == "s3:GetObject" for a, _ in allowed["intake"])  # signs tickets, reads nothing
    assert allowed["downloads"] == {("s3:GetObject", "res/*")}  # signs result links, writes nothing
    # The one user that deletes: the watchdog purges deleted uploads (objects, results, their
    # unfinished multipart uploads), removes validated objects and aborts the multipart uploads of ended
    # tickets; its reconciler lists the uploads bucket.
    assert allowed["watchdog"] == {
        ("s3:AbortMultipartUpload", "up/*"),
        ("s3:DeleteObject", "up/*"),
        ("s3:AbortMultipartUpload", "res/*"),
        ("s3:DeleteObject", "res/*"),
        ("s3:ListBucketMultipartUploads", "res"),
        ("s3:ListBucket", "up"),  # the reconciler's listing: etags and sizes, never an object's bytes
    }
    assert not any(a == "s3:GetObject" for a, _ in allowed["watchdog"])
    deleters = {svc for svc, given in allowed.items() for a, _ in given if a in ("s3:DeleteObject", "s3:*")}
    assert deleters == {"watchdog"}
    owner_allowed = {a for a, _, e in _actions(owner_grants("al", "up", "res")) if e == "Allow"}
    assert not any(a.startswith("s3:DeleteObject") for a in owner_allowed)


def test_every_user_is_denied_every_object_action_beyond_its_grants() -> None:
    """An ACL (the writer's own, or one a client added to a ticket) cannot give back what is denied."""
    everyone = {**service_grants("up", "res"), "owner": owner_grants("alice", "up", "res")}
    denials_checked = 0
    for user, grants in everyone.items():
        actions = _actions(grants)
        allowed = {(a, r) for a, r, e in actions if e == "Allow"}
        for bucket in ("up", "res"):
            for action in OBJECT_ACTIONS:
                if (action, f"{bucket}/*") not in allowed:
                    assert (action, f"{bucket}/*", "Deny") in actions, (user, action, bucket)
                    denials_checked += 1
        assert not any((a, r, "Deny") in actions for a, r in allowed), user  # no denial of its own grants
    assert denials_checked >= len(everyone), denials_checked  # each user is denied something


def test_owner_grants_write_under_the_prefix_and_deny_reads() -> None:
    allow, deny_uploads, deny_results = owner_grants("alice", "up", "res")
    assert allow.effect == "Allow" and allow.resources == ("up/alice/*",) and "s3:GetObject" not in allow.actions
    assert deny_uploads.effect == "Deny" and "s3:GetObject" in deny_uploads.actions
    assert deny_uploads.resources == ("up/*",) and deny_results.resources == ("res/*",)
    statement = allow.statement("S1", "arn:aws:iam:::user/owner-alice")
    assert statement["Resource"] == ["arn:aws:s3:::up/alice/*"]
    assert statement["Principal"] == {"AWS": ["arn:aws:iam:::user/owner-alice"]}


def test_statement_ids_never_mix_two_users() -> None:
    users = ["owner-a2", "owner-a-2", "owner-a", "owner-ab"]
    prefixes = [_sid_prefix(u) for u in users]
    assert len(set(prefixes)) == len(users)
    for user in users:
        ids = [_sid(user, i) for i in range(12)]
        assert all(i.isalnum() for i in ids)
        for other in users:
            if other != user:
                assert not any(i.startswith(_sid_prefix(other)) for i in ids)


def test_the_object_stores_publisher_can_only_publish_events() -> None:
    configure, write, read = stack.rgw_publisher_permissions("genobase.events")
    assert write == r"^genobase\.events$"
    assert configure == read == r"^amq\.gen-.*"  # its own server-named reply queue, no pipeline queue


def test_the_intakes_broker_user_can_only_publish_events() -> None:
    """Its one publish is a retry's notification; nothing to configure, nothing to consume."""
    assert stack.intake_permissions(Settings()) == ("^$", r"^genobase\.events$", "^$")
    values = {**VALUES, "GENOBASE_INTAKE_AMQP_URL": "amqp://genobase-intake:intake-secret@127.0.0.1:5672/genobase"}
    assert stack.service_settings("intake", values)["GENOBASE_AMQP_URL"] == values["GENOBASE_INTAKE_AMQP_URL"]
    for service in stack.SERVICES:
        if service != "intake":
            assert "intake-secret" not in "\n".join(stack.service_settings(service, values).values()), service
