#!/usr/bin/env bash
# The test command: on a fresh Debian machine with Python 3.11 it installs what is missing
# (apt packages for the native stack, a virtualenv with the project), then runs every test.
# Lint and type checks run first. The tests start their own stack (native or testcontainers) and remove it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
