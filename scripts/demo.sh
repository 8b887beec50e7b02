#!/usr/bin/env bash
# The main job on the built-in default configuration. Does its own set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/doublesparse demo "$@"
