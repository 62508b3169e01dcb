"""The stack's Postgres roles and database, made as the ``postgres`` superuser (``genobase up``, the tests).

Run through ``psql`` on this machine rather than a driver session: on Debian the superuser logs in
by peer authentication over the local socket, which needs the ``postgres`` system user. Every name
and password goes into the SQL quoted by psycopg (``sql.Identifier``, ``sql.Literal``).
"""

from __future__ import annotations

import os
import subprocess

# The role attributes ``ensure_pg_role`` manages: each is granted if asked for, else taken away.
MANAGED_ATTRIBUTES = ("CREATEDB", "CREATEROLE")


def psql_as_postgres(statement: str) -> str:
    """Run SQL as the postgres superuser over the local socket (peer auth on Debian).

    The SQL goes in on standard input, never on the command line: it may hold a password.
    """
    cmd = ["psql", "-qAtX", "-v", "ON_ERROR_STOP=1"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    else:
        cmd += ["-h", "127.0.0.1", "-U", "postgres"]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, input=statement).stdout


def ensure_pg_role(role: str, password: str, database: str | None = None, attributes: str = "") -> None:
    """A login role (with ``attributes``, e.g. CREATEDB for the tests' admin) and, optionally, its database.

    Every attribute not asked for is taken away, so a role made by an older version loses it.
    """
    from psycopg import sql  # here: importing the stack's code does not load the driver

    exists = psql_as_postgres(
        sql.SQL("SELECT 1 FROM pg_roles WHERE rolname = {}").format(sql.Literal(role)).as_string()
    ).strip()
    verb = "ALTER" if exists else "CREATE"
    wanted = set(attributes.split())
    flags = " ".join(flag if flag in wanted else f"NO{flag}" for flag in MANAGED_ATTRIBUTES)
    statement = sql.SQL("{} ROLE {} LOGIN {} PASSWORD {}").format(
        sql.SQL(verb), sql.Identifier(role), sql.SQL(flags), sql.Literal(password)
    )
    psql_as_postgres(statement.as_string())
    if (
        database
        and not psql_as_postgres(
            sql.SQL("SELECT 1 FROM pg_database WHERE datname = {}").format(sql.Literal(database)).as_string()
        ).strip()
    ):
        psql_as_postgres(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role)).as_string()
        )
