"""The declared lower bounds, tested: the unit tests in a second virtualenv holding the lowest
versions that pyproject.toml allows.

A floor such as ``fastapi>=0.110`` is a promise that the code works with that release. Nothing
checks such a promise when every environment installs the newest release, so it silently goes
stale as the code starts using newer names. This script makes the promise a test:

1. every requirement of ``[project] dependencies`` and of the ``dev`` extra (the test tools are
   requirements too) must have a ``>=`` floor; each floor becomes an exact pin (``name==floor``)
   in ``.venv-floors/floors.txt``. Indirect dependencies are left to the resolver, as the floors
   of the direct ones allow them: the same choice as uv's ``--resolution lowest-direct``;
2. ``.venv-floors`` (git-ignored) is built with the project installed in it, editable, under those
   pins. A floor that cannot be installed on this Python (no wheel, an sdist that no longer
   builds) or that conflicts with another floor fails here;
3. what the unit tests do not reach is tried first: every module of the project imported, and the
   S3 client built with the options shared/s3/store.py gives it (botocore rejects an option it
   does not know; no connection is made);
4. the unit tests (and ``tests/contract`` where it exists) run in that virtualenv.

The virtualenv is kept while pyproject.toml, the pins and the Python version are unchanged (a
stamp file holds their hash), so a repeated run costs only the tests.

    python scripts/check-floors.py            # build or reuse .venv-floors, run the tests
    python scripts/check-floors.py --rebuild  # build it afresh
    python scripts/check-floors.py -- -k seqcol   # arguments after -- go to pytest
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-floors"
PINS = VENV / "floors.txt"
STAMP = VENV / "floors.stamp"
EXTRAS = ("dev",)
SMOKE = """
import importlib, pkgutil
for name in ("shared", "services", "genobase"):
    package = importlib.import_module(name)
    for module in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(module.name)
from shared.runtime.settings import Settings
from shared.s3.store import make_client
make_client(Settings(), endpoint="http://127.0.0.1:9")
"""


def floor_pins(pyproject: dict[str, object]) -> list[str]:
    """``name==floor`` for every direct requirement; a requirement without a floor is an error."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    requirements: list[str] = list(project["dependencies"])
    for extra in EXTRAS:
        requirements += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    missing: list[str] = []
    for text in requirements:
        requirement = Requirement(text)
        floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(floors) != 1:
            missing.append(text)
            continue
        pins[requirement.name.lower()] = f"{requirement.name}=={floors[0]}"
    if missing:
        sys.exit("check-floors: every requirement needs one '>=' floor; these have none: " + ", ".join(missing))
    return sorted(pins.values(), key=str.lower)


def stamp_of(pins: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update((ROOT / "pyproject.toml").read_bytes())
    digest.update("\n".join(pins).encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def build(pins: list[str], stamp: str) -> None:
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    PINS.write_text("\n".join(pins) + "\n")
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    install = [*pip, "install", "-c", str(PINS), "-e", f".[{','.join(EXTRAS)}]"]
    result = subprocess.run(install, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        # pip's own account of why (a conflict between two floors, a floor with no wheel for this
        # Python), without the progress lines.
        errors = [line for line in result.stderr.splitlines() if not line.startswith("WARNING: Location")]
        print("\n".join(errors[-25:]), file=sys.stderr)
        sys.exit(f"check-floors: the floors in {PINS} cannot be installed together")
    STAMP.write_text(stamp + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuild", action="store_true", help="build .venv-floors afresh even if its stamp matches")
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest, after --")
    args = parser.parse_args()

    with (ROOT / "pyproject.toml").open("rb") as handle:
        pins = floor_pins(tomllib.load(handle))
    stamp = stamp_of(pins)
    started = time.monotonic()
    current = STAMP.read_text().strip() if STAMP.exists() else ""
    if args.rebuild or current != stamp:
        print(f"check-floors: building {VENV.name} with {len(pins)} floors", file=sys.stderr)
        build(pins, stamp)
        print(f"check-floors: built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    else:
        print(f"check-floors: reusing {VENV.name} (pyproject and floors unchanged)", file=sys.stderr)

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    smoke = subprocess.run([str(VENV / "bin" / "python"), "-c", SMOKE], cwd=ROOT, env=env, check=False)
    if smoke.returncode != 0:
        print(
            f"check-floors: the project does not import or build its clients with the floors in {PINS}", file=sys.stderr
        )
        return smoke.returncode
    suites = [str(path) for path in (ROOT / "tests" / "unit", ROOT / "tests" / "contract") if path.is_dir()]
    command = [str(VENV / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites, *args.pytest_args]
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        print(f"check-floors: the tests fail with the floors in {PINS}", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
