"""Run one convolution layer through the RTL engine and check it against the golden model."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..sim.config import Config
from ..sim.conv import conv2d_golden, make_job, requantize
from ..sim.engine_model import engine_cycles, engine_steps

__all__ = ["LayerRun", "run_layer"]


@dataclass
class LayerRun:
    y: np.ndarray | None        # RTL output (int32 raw or int8), None on an engine error
    ref: np.ndarray             # golden output
    stats: dict
    error: int


def run_layer(w: np.ndarray, a: np.ndarray, cfg: Config, stride: int = 1, pad: int = 0,
              requant: tuple[np.ndarray, np.ndarray] | None = None, relu: bool = True,
              sim: str = "verilator", balance: bool = True, waves: bool = False) -> LayerRun:
    from ..rtl.engine import EngineError
    from ..tb.runner import engine_run_dict, run_engine_rtl

    t0 = time.time()
    job = make_job(w, a, cfg, stride, pad, requant, relu, balance)
    L = job.layer
    steps = engine_steps(job, cfg)
    predicted = engine_cycles(job, cfg, steps)
    r = run_engine_rtl(cfg, [engine_run_dict(job, cfg)], sim=sim, waves=waves)[0]
    acc = conv2d_golden(w.astype(np.int64), a.astype(np.int64), stride, pad)
    ref = acc.astype(np.int32) if requant is None else requantize(acc, *requant, relu=relu)
    mult = cfg.pes * cfg.multipliers
    eff = int(steps[0].sum())
    dense = L.K * L.C * L.R * L.S * L.Ho * L.Wo
    stats = {"layer": {"K": L.K, "C": L.C, "R": L.R, "S": L.S, "H": L.H, "W": L.W,
                       "stride": stride, "pad": pad, "Ho": L.Ho, "Wo": L.Wo},
             "d_w": float(np.count_nonzero(w) / w.size),
             "d_a": float(np.count_nonzero(a) / a.size),
             "sim": sim, "pes": cfg.pes, "multipliers": mult, "balanced": balance,
             "error": r["error"], "error_meaning": EngineError.MEANING.get(r["error"], "?")}
    y = None
    if r["error"] == 0:
        y = np.array(r["out"], dtype=np.int64).reshape(ref.shape).astype(ref.dtype)
        cycles = r["cycles"]
        stats.update({
            "cycles": cycles, "effectual_macs": r["macs"], "effectual_macs_host": eff,
            "dense_macs": dense, "ideal_cycles": -(-r["macs"] // mult),
            "dense_cycles": -(-dense // mult), "utilization": r["macs"] / (mult * cycles),
            "speedup_vs_dense": (-(-dense // mult)) / cycles,
            "per_pe_busy": r["pe_busy"], "per_pe_macs": r["pe_macs"],
            "busy_max_over_mean": max(r["pe_busy"]) / max(1e-9, float(np.mean(r["pe_busy"]))),
            "macs_max_over_mean": max(r["pe_macs"]) / max(1e-9, float(np.mean(r["pe_macs"]))),
            "predicted_cycles": predicted, "model_error": predicted / cycles - 1,
            "match": bool(np.array_equal(y, ref)), "wall_seconds": time.time() - t0})
    return LayerRun(y, ref, stats, r["error"])
