#!/usr/bin/env bash
# The test command. Where a Docker engine answers (or GENOBASE_TEST_STACK=containers), it installs
# the Python environment only and the tests run their servers in containers; otherwise, on Debian
# with Python 3.11 as root, it installs what the native stack needs (apt packages, Ceph) first.
# Lint and type checks run first. The tests start their own stack and remove it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${GENOBASE_TEST_STACK:-}" ] || [ "$GENOBASE_TEST_STACK" = auto ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    GENOBASE_TEST_STACK=containers
  else
    GENOBASE_TEST_STACK=native
  fi
fi
export GENOBASE_TEST_STACK
echo "test stack: $GENOBASE_TEST_STACK" >&2
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The declared floors, tested: the unit tests again in .venv-floors, with the lowest versions
# pyproject.toml allows (built once, reused while pyproject is unchanged: ~2.5 min when built,
# ~1 min when reused, on two cores). GENOBASE_SKIP_FLOORS=1 leaves it out.
if [ "${GENOBASE_SKIP_FLOORS:-0}" != 1 ]; then .venv/bin/python scripts/check-floors.py; fi
# --cov: branch coverage of services/ and shared/domain ([tool.coverage.*] in pyproject.toml), its
# table (fully covered files left out) and TOTAL line printed at the end of the run.
exec .venv/bin/python -m pytest --cov --cov-report=term-missing:skip-covered "$@"
