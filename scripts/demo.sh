#!/usr/bin/env bash
# The run command: brings the whole stack up and sends the bundled sample through it end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/genobase up
.venv/bin/genobase upload samples/sample.fasta --wait --output sample-result.json --force  # a rerun replaces it
