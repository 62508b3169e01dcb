"""The import rules of the tree, checked rather than stated: what each layer may import.

* No service imports another service (each is deployed, scaled and restarted on its own).
* ``shared/`` imports no service and not the CLI (services import it, never the reverse).
* The parsing engine (``shared/parsing/``) imports nothing of the project outside itself: it is a
  library of bytes in, records out, usable and testable alone.
* The domain (``shared/domain/``) imports no adapter (``shared/postgres``, ``shared/rabbitmq``,
  ``shared/s3``) and no HTTP edge (``shared/web``): only itself, the pure engine and the settings'
  types. The service layer (``shared/usecases/``) may use the domain and the runtime, never an
  adapter: adapters are handed to it through the ports.

Read from the source with ``ast`` (imports inside functions count too), so a rule broken anywhere
fails here, without importing anything.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("shared", "services", "genobase")


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, as a dotted name (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join([*base, node.module] if node.module else base)
            elif node.module:
                yield node.module


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def _broken(folder: str, allowed: Callable[[Path, str], bool]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(folder)
        for name in _imports(path)
        if name.split(".")[0] in PROJECT and not allowed(path, name)
    ]


def test_no_service_imports_another() -> None:
    def allowed(path: Path, name: str) -> bool:
        own = path.relative_to(ROOT).parts[1]
        return not name.startswith("services.") or name.split(".")[1] == own

    assert _broken("services", allowed) == []


def test_shared_imports_no_service_nor_the_cli() -> None:
    assert _broken("shared", lambda path, name: name.split(".")[0] == "shared") == []


def test_the_parsing_engine_imports_nothing_of_the_project_but_itself() -> None:
    assert _broken("shared/parsing", lambda path, name: name.startswith("shared.parsing")) == []


DOMAIN_MAY_IMPORT = ("shared.domain", "shared.parsing", "shared.runtime.settings")
USECASES_MAY_IMPORT = ("shared.usecases", "shared.domain", "shared.parsing", "shared.runtime")


def test_the_domain_imports_no_adapter() -> None:
    assert _broken("shared/domain", lambda path, name: name.startswith(DOMAIN_MAY_IMPORT)) == []


def test_the_use_cases_import_no_adapter() -> None:
    assert _broken("shared/usecases", lambda path, name: name.startswith(USECASES_MAY_IMPORT)) == []


def test_the_rules_see_imports() -> None:
    """The checks cannot pass by finding nothing: the engine's front door imports its formats."""
    engine = ROOT / "shared/parsing/engine.py"
    assert any(name.startswith("shared.parsing.") for name in _imports(engine))
    assert len(_modules("services")) > 10 and len(_modules("shared")) > 20
    use_cases = ROOT / "shared/usecases/uploads.py"
    assert any(name.startswith("shared.domain.") for name in _imports(use_cases))
