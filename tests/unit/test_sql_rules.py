"""SQL lives in the Postgres adapter: outside ``shared/postgres/`` no module of the services
(``services/``), the CLI and stack code (``genobase/``) or the rest of ``shared/`` imports the
driver (``psycopg``, its pool included) or holds an SQL statement.

Read from the source with ``ast``, like the import rules: a statement is a string constant that
starts with an SQL verb (upper case, as the project writes SQL) and names what it works on
(``SELECT 1 FROM``, ``INSERT INTO``, ...).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "shared" / "postgres"
STATEMENT = re.compile(
    r"^\s*(SELECT\s.+\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|"
    r"(CREATE|ALTER|DROP)\s+(TABLE|ROLE|DATABASE|INDEX|SCHEMA)\s|GRANT\s|REVOKE\s)",
    re.DOTALL,
)


def _checked() -> list[Path]:
    paths = [path for folder in ("genobase", "shared", "services") for path in (ROOT / folder).rglob("*.py")]
    return sorted(p for p in paths if ADAPTER not in p.parents)


def _driver_imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return [name for name in names if name.split(".")[0] in ("psycopg", "psycopg_pool")]


def _statements(tree: ast.AST) -> list[str]:
    return [
        node.value[:60]
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and STATEMENT.match(node.value)
    ]


def test_no_module_outside_the_adapter_imports_the_driver_or_holds_sql() -> None:
    broken = []
    for path in _checked():
        tree = ast.parse(path.read_text(), str(path))
        broken += [f"{path.relative_to(ROOT)} imports {name}" for name in _driver_imports(tree)]
        broken += [f"{path.relative_to(ROOT)} holds {text!r}" for text in _statements(tree)]
    assert broken == []


def test_the_rule_sees_statements_and_driver_imports() -> None:
    """The check cannot pass by finding nothing: the adapter's own modules break it."""
    keys = ast.parse((ADAPTER / "keys.py").read_text())
    provision = ast.parse((ADAPTER / "provision.py").read_text())
    assert any(text.startswith("INSERT INTO api_keys") for text in _statements(keys))
    assert _driver_imports(provision) == ["psycopg"]
    assert len(_checked()) > 20 and any(p.parent.name == "genobase" for p in _checked())
