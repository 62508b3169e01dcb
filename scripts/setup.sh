#!/usr/bin/env bash
# Idempotent set-up: system packages for the native stack, PostgreSQL and RabbitMQ running, and a
# virtualenv in .venv with the project and its development tools.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv python3-pip
fi
# gcc and OpenSSL's headers build the parsing engine's C loops (without them it runs slower, in Python).
if ! command -v gcc >/dev/null || [ ! -e /usr/include/openssl/sha.h ]; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc libc6-dev libssl-dev
fi
bash genobase/scripts/bootstrap.sh >/dev/null
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
