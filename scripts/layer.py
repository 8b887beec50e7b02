"""Run convolution layers through the RTL engine and check them against the golden model."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..sim.config import Config
from ..sim.conv import (
    REQUANT_MULT,
    REQUANT_SHIFT,
    LayerError,
    add_bias,
    check_layer,
    check_requant,
    conv2d_golden,
    layer_needs,
    make_job,
    requantize,
)
from ..sim.engine_model import engine_cycles, engine_steps

__all__ = ["LayerRun", "LayerSpec", "run_layer", "run_layers", "effectual_pairs",
           "in_image_macs", "gops_dense_equivalent", "layer_needs", "check_layer",
           "check_requant", "REQUANT_MULT", "REQUANT_SHIFT"]

@dataclass
class LayerRun:
    y: np.ndarray | None        # RTL output (int32 raw or int8), None on an engine error
    ref: np.ndarray             # golden output
    stats: dict
    error: int


@dataclass
class LayerSpec:
    """One engine job: a layer, how its operands are stored and how it is scheduled."""

    w: np.ndarray
    a: np.ndarray
    stride: int = 1
    pad: int = 0
    requant: tuple[np.ndarray, np.ndarray] | None = None
    relu: bool = True
    balance: bool = True
    dense_weights: bool = False
    dense_acts: bool = False
    bias: np.ndarray | None = None      # per output channel, int32 (None: no bias)


def effectual_pairs(w: np.ndarray, a: np.ndarray, stride: int = 1, pad: int = 0) -> int:
    """Nonzero-weight x nonzero-activation products of a layer (the work of the bound)."""
    return int(conv2d_golden((w != 0).astype(np.int64), (a != 0).astype(np.int64),
                             stride, pad).sum())


def gops_dense_equivalent(dense_macs: int, cycles: int, fmax_mhz: float) -> float:
    """Dense-equivalent GOP/s: 2 x the dense MACs of the work x Fmax / cycles."""
    return 2 * dense_macs * fmax_mhz * 1e6 / cycles / 1e9


def in_image_macs(K: int, C: int, R: int, S: int, H: int, W: int, stride: int = 1,
                  pad: int = 0) -> int:
    """Dense MACs of the taps that fall inside the image (taps in the zero padding are
    not counted: the engine skips them)."""
    taps = conv2d_golden(np.ones((1, 1, R, S), np.int64), np.ones((1, H, W), np.int64),
                         stride, pad)
    return int(taps.sum()) * K * C


def run_layer(w: np.ndarray, a: np.ndarray, cfg: Config, stride: int = 1, pad: int = 0,
              requant: tuple[np.ndarray, np.ndarray] | None = None, relu: bool = True,
              sim: str = "verilator", balance: bool = True, waves: bool = False,
              dense_weights: bool = False, dense_acts: bool = False,
              fmax_mhz: float | None = None, bias: np.ndarray | None = None) -> LayerRun:
    """One layer through the RTL engine (one simulation), checked against the golden model.
    ``fmax_mhz`` (a synthesis report's figure) adds the dense-equivalent GOP/s; ``bias``
    (K int32 values) is added to the accumulators before requantization and in raw mode."""
    spec = LayerSpec(w, a, stride, pad, requant, relu, balance, dense_weights, dense_acts,
                     bias)
    return run_layers([spec], cfg, sim=sim, waves=waves, fmax_mhz=fmax_mhz)[0]


def run_layers(specs: list[LayerSpec], cfg: Config, sim: str = "verilator",
               waves: bool = False, fmax_mhz: float | None = None) -> list[LayerRun]:
    """Several engine jobs, one after another in one simulation (the simulator model is
    built once per config and reused); each is checked against the golden model."""
    for s in specs:  # every job is checked before any is encoded or simulated
        check_layer(s.w, s.a, cfg, s.stride, s.pad, s.requant, s.balance, s.dense_weights,
                    s.bias)
    from ..tb.runner import engine_run_dict, run_engine_rtl

    t0 = time.time()
    jobs = [make_job(s.w, s.a, cfg, s.stride, s.pad, s.requant, s.relu, s.balance,
                     s.dense_weights, s.dense_acts, s.bias) for s in specs]
    rs = run_engine_rtl(cfg, [engine_run_dict(j, cfg) for j in jobs], sim=sim, waves=waves)
    wall = (time.time() - t0) / max(1, len(specs))
    return [_layer_run(s, j, r, cfg, sim, wall, fmax_mhz)
            for s, j, r in zip(specs, jobs, rs, strict=True)]


def _layer_run(s: LayerSpec, job, r: dict, cfg: Config, sim: str, wall: float,
               fmax_mhz: float | None = None) -> LayerRun:
    from ..rtl.engine import ERROR_MEANING

    L = job.layer
    steps = engine_steps(job, cfg)
    predicted = engine_cycles(job, cfg, steps)
    acc = add_bias(conv2d_golden(s.w.astype(np.int64), s.a.astype(np.int64), s.stride,
                                 s.pad), s.bias, cfg.acc_width)
    ref = acc.astype(np.int32) if s.requant is None else requantize(acc, *s.requant,
                                                                     relu=s.relu)
    mult = cfg.engine_multipliers
    dense = L.K * L.C * L.R * L.S * L.Ho * L.Wo
    dense_in_image = in_image_macs(L.K, L.C, L.R, L.S, L.H, L.W, s.stride, s.pad)
    stats = {"layer": {"K": L.K, "C": L.C, "R": L.R, "S": L.S, "H": L.H, "W": L.W,
                       "stride": s.stride, "pad": s.pad, "Ho": L.Ho, "Wo": L.Wo},
             "d_w": float(np.count_nonzero(s.w) / s.w.size),
             "d_a": float(np.count_nonzero(s.a) / s.a.size),
             "encoding": {"weights": "dense" if s.dense_weights else "sparse",
                          "activations": "dense" if s.dense_acts else "sparse"},
             "sim": sim, "pes": cfg.pes, "multipliers": mult, "scan_width": cfg.scan_width,
             "out_lanes": cfg.out_lanes, "balanced": s.balance,
             "error": r["error"], "error_meaning": ERROR_MEANING.get(r["error"], "?")}
    y = None
    if r["error"] == 0:
        y = np.array(r["out"], dtype=np.int64).reshape(ref.shape).astype(ref.dtype)
        cycles = r["cycles"]
        stats.update({
            "cycles": cycles, "effectual_macs": r["macs"],
            "effectual_macs_host": int(steps[0].sum()),
            "nonzero_pairs": effectual_pairs(s.w, s.a, s.stride, s.pad),
            "dense_macs": dense, "ideal_cycles": -(-r["macs"] // mult),
            "dense_cycles": -(-dense // mult), "utilization": r["macs"] / (mult * cycles),
            "speedup_vs_dense": (-(-dense // mult)) / cycles,
            "dense_cycles_in_image": -(-dense_in_image // mult),
            "per_pe_busy": r["pe_busy"], "per_pe_macs": r["pe_macs"],
            "busy_max_over_mean": max(r["pe_busy"]) / max(1e-9, float(np.mean(r["pe_busy"]))),
            "macs_max_over_mean": max(r["pe_macs"]) / max(1e-9, float(np.mean(r["pe_macs"]))),
            "predicted_cycles": predicted, "model_error": predicted / cycles - 1,
            "match": bool(np.array_equal(y, ref)), "wall_seconds": wall})
        if fmax_mhz is not None:
            stats["fmax_mhz"] = fmax_mhz
            stats["gops_dense_equivalent_at_fmax"] = gops_dense_equivalent(
                dense_in_image, cycles, fmax_mhz)
    return LayerRun(y, ref, stats, r["error"])


def run_layer_uart(w: np.ndarray, a: np.ndarray, cfg: Config, stride: int = 1, pad: int = 0,
                   requant: tuple[np.ndarray, np.ndarray] | None = None, relu: bool = True,
                   sim: str = "verilator", weight_format: str = "bitmap",
                   act_format: str = "bitmap", waves: bool = False,
                   fmax_mhz: float | None = None, bias: np.ndarray | None = None
                   ) -> LayerRun:
    """One layer through the system top behind its UART (``rtl/system/``): the host driver
    sends the weights and activations as ``weight_format`` / ``act_format`` images, which
    the hardware decodes into the engine's memories, then runs the layer and reads the
    results back over the UART; checked against the golden model like :func:`run_layer`.
    The stats add ``via``, the formats, the load's bytes and its UART throughput: the
    LOAD requests' bytes over the line rate (bytes / (baud / 10)) during those requests,
    each from its first byte sent to its reply's last byte received
    (``layer_load_cycles``: the whole load, KMAP, MULT, SHIFT and descriptor included)."""
    from ..tb.runner import SIM_BAUD, SIM_CLOCK_HZ, run_system_rtl
    from .host import FORMATS

    for name, f in (("weight_format", weight_format), ("act_format", act_format)):
        if f not in FORMATS:
            raise LayerError(f"{name} {f!r}: expected one of {', '.join(FORMATS)}")
    spec = LayerSpec(w, a, stride, pad, requant, relu, bias=bias)
    job = make_job(w, a, cfg, stride, pad, requant, relu, bias=bias)  # checks the layer
    rq = None if requant is None else [np.asarray(requant[0]).tolist(),
                                       np.asarray(requant[1]).tolist()]
    step = {"layer": {"w": np.asarray(w).tolist(), "a": np.asarray(a).tolist(),
                      "stride": stride, "pad": pad, "requant": rq, "relu": relu,
                      "bias": None if bias is None else np.asarray(bias).tolist(),
                      "weight_format": weight_format, "act_format": act_format}}
    t0 = time.time()
    r = run_system_rtl(cfg, [step], sim=sim, waves=waves)[0]
    run = _layer_run(spec, job, r, cfg, sim, time.time() - t0, fmax_mhz)
    load_cycles = r["load_request_cycles"]       # inside the LOAD requests
    bit_cycles = SIM_CLOCK_HZ / SIM_BAUD
    run.stats.update({
        "via": "uart", "weight_format": weight_format, "act_format": act_format,
        "uart_baud_sim": SIM_BAUD, "uart_clock_hz_sim": SIM_CLOCK_HZ,
        "load_request_bytes": r["load_request_bytes"],
        "load_reply_bytes": r["load_reply_bytes"], "load_cycles": int(load_cycles),
        "layer_load_cycles": int(r["load_ns"] * SIM_CLOCK_HZ / 1e9),
        "load_images": r["images"],
        "uart_load_throughput": r["load_request_bytes"] * 10 * bit_cycles / load_cycles})
    return run


def run_layer_board(w: np.ndarray, a: np.ndarray, cfg: Config, port: str, baud: int,
                    stride: int = 1, pad: int = 0,
                    requant: tuple[np.ndarray, np.ndarray] | None = None, relu: bool = True,
                    weight_format: str = "bitmap", act_format: str = "bitmap",
                    fmax_mhz: float | None = None, bias: np.ndarray | None = None
                    ) -> LayerRun:
    """:func:`run_layer_uart` on a board at a serial port (``scripts/host.py:SerialLink``),
    checked against the golden model the same way."""
    from .host import Board, SerialLink, run_sync

    check_layer(w, a, cfg, stride, pad, requant, bias=bias)
    board = Board(SerialLink(port, baud), cfg)    # the port first: nothing encoded for none
    spec = LayerSpec(w, a, stride, pad, requant, relu, bias=bias)
    job = make_job(w, a, cfg, stride, pad, requant, relu, bias=bias)
    t0 = time.time()
    r = run_sync(board.run_layer(job, np.asarray(w), np.asarray(a), weight_format,
                                 act_format))
    run = _layer_run(spec, job, r, cfg, f"board at {port}", time.time() - t0, fmax_mhz)
    run.stats.update({"via": "uart", "port": port, "baud": baud,
                      "weight_format": weight_format, "act_format": act_format,
                      "load_request_bytes": board.stats.request_bytes,
                      "load_seconds": board.stats.load_time})
    return run
