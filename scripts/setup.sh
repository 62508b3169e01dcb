#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with the project and its development tools and, for the
# native stack, the system packages (Debian's, as root) with PostgreSQL and RabbitMQ running.
#
# GENOBASE_TEST_STACK=containers (set by scripts/test.sh when a Docker engine answers) installs the
# Python environment only (so does GENOBASE_STACK=compose, for `genobase up` on Docker): the tests then bring their servers up in containers, on any host with
# Python 3.11 and Docker (macOS or another Linux included), with no apt, Ceph or root.
set -euo pipefail
cd "$(dirname "$0")/.."
native=1
if [ "${GENOBASE_TEST_STACK:-native}" = containers ] || [ "${GENOBASE_STACK:-native}" = compose ]; then native=0; fi
if [ "$native" = 1 ]; then
  if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv python3-pip
  fi
  # gcc and OpenSSL's headers build the parsing engine's C loops (without them it runs slower, in Python).
  if ! command -v gcc >/dev/null || [ ! -e /usr/include/openssl/sha.h ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc libc6-dev libssl-dev
  fi
  # Debian's Chromium and its driver for the upload page's browser tests (tests/browser/)
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
  fi
  # zsh and fish: the CLI's completion scripts are checked by the shells they are for (tests/unit/test_cli_completion.py)
  if ! command -v zsh >/dev/null || ! command -v fish >/dev/null; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q zsh fish
  fi
  bash genobase/scripts/bootstrap.sh >/dev/null
fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
# constraints.txt pins every distribution to the tested version (refreshed on purpose: scripts/lock.sh).
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
