#!/usr/bin/env bash
# Run the whole test suite (lint, Amaranth-simulator tests, cocotb tests under Verilator and
# Icarus). Does its own set-up. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
