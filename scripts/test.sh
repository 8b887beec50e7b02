#!/usr/bin/env bash
# Run the whole test suite (lint, Amaranth-simulator tests, cocotb tests under Verilator and
# Icarus, formal proofs), one pytest worker per CPU (pytest-xdist; the simulator builds are
# shared through a file lock). Does its own set-up. Extra arguments go to pytest (e.g.
# `-n 0` for one process, `-k NAME`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -n auto "$@"
