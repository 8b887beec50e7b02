"""The system top behind its UART pins under Verilator (``tb/cocotb_system.py``), one
build for both tests:

* a layer whose weights cross the UART as N:M images and activations as run-length
  images (``scripts/layer.py:run_layer_uart``, the path of ``run-layer --via uart``),
  checked against the golden convolution, its pipelined load at 90 % of the line rate or
  more;
* the UART fuzz of ``scripts/bench_uart.py`` at a modest count (the benchmark runs 1,000
  and more): corrupted requests of every kind, each refused with the code its reference
  gives, no byte after a refusal taken, the descriptor unchanged, the loaded layer rerun
  without reloading and a new layer both bit-exact.

The stream side, every format and more corruptions run in Amaranth's simulator
(``tb/test_system.py``)."""

from __future__ import annotations

import io

import numpy as np

from doublesparse.scripts.bench_uart import KINDS, run_fuzz
from doublesparse.scripts.layer import run_layer_uart
from doublesparse.sim.config import Config
from doublesparse.sim.conv import conv2d_golden
from doublesparse.sim.formats import prune_nm
from doublesparse.tb.streams import seed_for

#: the issue's target for the UART load throughput (bytes over baud / 10)
LOAD_THROUGHPUT_MIN = 0.90
FUZZ_REQUESTS = 24


def test_layer_over_the_uart() -> None:
    seed = seed_for("system_uart")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    cfg = Config()
    C = K = 16
    w = np.where(rng.random((K, C, 3, 3)) < 0.6, rng.integers(-128, 128, (K, C, 3, 3)), 0)
    w = prune_nm(w.transpose(1, 0, 2, 3), cfg.nm_n, cfg.nm_m).transpose(1, 0, 2, 3)
    a = np.where(rng.random((C, 8, 8)) < 0.4, rng.integers(-128, 128, (C, 8, 8)), 0)
    run = run_layer_uart(w, a, cfg, 1, 1, weight_format="nm", act_format="rle")
    want = conv2d_golden(w, a, 1, 1)
    assert run.error == 0 and run.stats["match"], (
        f"RTL {run.y.ravel()[:8] if run.y is not None else None} vs golden "
        f"{want.ravel()[:8]}")
    st = {k: run.stats[k] for k in ("load_request_bytes", "load_cycles",
                                    "uart_load_throughput", "load_images")}
    print(st)
    assert st["uart_load_throughput"] >= LOAD_THROUGHPUT_MIN, st


def test_uart_fuzz() -> None:
    seed = seed_for("system_uart_fuzz")
    out = io.StringIO()
    res = run_fuzz(FUZZ_REQUESTS, seed, out=out)
    print(out.getvalue())
    assert not res["failures"], "\n".join(res["failures"])
    assert res["wrongly_accepted"] == 0 and res["refused"] == FUZZ_REQUESTS, res
    assert set(res["by_kind"]) == set(KINDS), res["by_kind"]
    assert len(res["by_code"]) >= 6, res["by_code"]
