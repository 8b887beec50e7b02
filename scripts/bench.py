"""Benchmarks that print measured figures against their bounds."""

from __future__ import annotations

import numpy as np

from ..sim.config import Config
from ..sim.formats import Err, to_chunks
from ..tb.stimulus import FORMATS, random_image

DENSITIES = (0.0, 0.05, 0.3, 0.7, 1.0)


def _run(cfg: Config, words: list[int], lasts: list[bool], sim: str):
    if sim == "amaranth":
        from ..tb.amaranth_harness import run_decoder

        return run_decoder(cfg, words, lasts)
    from ..tb.runner import run_decoder_rtl

    return run_decoder_rtl(cfg, words, lasts, sim=sim, check=False)


def bench_decoder(cfg: Config, sim: str = "verilator", seed: int = 1,
                  quick: bool = False) -> list[dict]:
    """Decoder throughput per format and density with no stalls on either side.

    The decoder needs at least one cycle per input word and one per output chunk, so the
    bound is max(words, chunks) cycles; ``cycles`` counts from the first word offered to the
    ``done`` pulse (one cycle after the final word is accepted).
    """
    shape = (64, 4, 4) if quick else (64, 16, 16)
    rng = np.random.default_rng(seed)
    rows = []
    print(f"decoder benchmark: tensor {shape} (C x positions), J={cfg.join_width}, "
          f"R={cfg.run_bits}, {cfg.nm_n}:{cfg.nm_m}, sim={sim}, seed={seed}")
    hdr = (f"{'format':7} {'density':>7} {'words':>6} {'chunks':>6} {'cycles':>6} "
           f"{'words/cyc':>9} {'chunks/cyc':>10} {'bound':>6} {'cyc/bound':>9} {'ratio':>6}")
    print(hdr)
    print("-" * len(hdr))
    for fmt in FORMATS:
        for d in DENSITIES:
            x, img = random_image(rng, cfg, fmt, shape, d)
            words = [int(w) for w in img]
            res = _run(cfg, words, [False] * (len(words) - 1) + [True], sim)
            ref = to_chunks(x, cfg.join_width)
            ok = res.errors == [Err.OK] and res.chunks == ref
            if not ok:
                raise RuntimeError(f"decoder bench: {fmt} d={d}: RTL output wrong "
                                   f"(errors {res.errors})")
            bound = max(len(words), len(ref))
            row = {"format": fmt, "density": d, "words": len(words), "chunks": len(ref),
                   "cycles": res.cycles, "words_per_cycle": len(words) / res.cycles,
                   "chunks_per_cycle": len(ref) / res.cycles, "bound": bound,
                   "cycles_over_bound": res.cycles / bound,
                   "compression": x.size / (4 * len(words))}
            rows.append(row)
            print(f"{fmt:7} {d:7.2f} {row['words']:6d} {row['chunks']:6d} {row['cycles']:6d} "
                  f"{row['words_per_cycle']:9.3f} {row['chunks_per_cycle']:10.3f} "
                  f"{bound:6d} {row['cycles_over_bound']:9.3f} {row['compression']:5.2f}x",
                  flush=True)
    worst = max(r["cycles_over_bound"] for r in rows)
    print(f"worst cycles/bound: {worst:.3f} (1.000 = one word or one chunk every cycle)")
    return rows


PE_DENSITIES = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)


def pe_segments(cfg: Config, rng: np.random.Generator, dens: list[tuple[float, float]],
                length: int, n_vec: int):
    """One benchmark segment per (d_w, d_a): ``n_vec`` random dot products of ``length``."""
    from ..sim.pe_model import pe_chunks, pe_golden
    from ..tb.stimulus import random_tensor

    segs, meta = [], []
    for dw, da in dens:
        ws = [random_tensor(rng, (length,), dw) for _ in range(n_vec)]
        as_ = [random_tensor(rng, (length,), da) for _ in range(n_vec)]
        wc, ac = pe_chunks(ws, cfg), pe_chunks(as_, cfg)
        gold = pe_golden(ws, as_, cfg)
        pairs = sum(int(np.count_nonzero((w != 0) & (a != 0))) for w, a in zip(ws, as_,
                                                                                strict=True))
        segs.append({"w": [[c.mask, list(c.values), c.last] for c in wc],
                     "a": [[c.mask, list(c.values), c.last] for c in ac],
                     "n_results": n_vec, "expected": [[v, int(e)] for v, e in gold]})
        meta.append({"d_w": dw, "d_a": da, "pairs": pairs, "chunks": len(wc),
                     "wc": wc, "ac": ac})
    return segs, meta


def bench_pe(base: Config, sim: str = "verilator", seed: int = 1, quick: bool = False,
             length: int | None = None) -> list[dict]:
    """Measured PE cycles against the bound for each multiplier count and density pair.

    Each row is one random dot product of ``length`` channels (8192; 2048 with ``quick``)
    through the RTL PE with no stalls; the bound is max(ceil(pairs / M), chunk pairs) + the
    pipeline latency PE_LATENCY: one chunk pair enters per cycle and M products leave per
    cycle. ``pairs / length`` is the fraction of channels where both operands are nonzero.
    """
    from ..sim.pe_model import PE_LATENCY, pe_bound, pe_cycles
    from ..tb.runner import run_cocotb

    length = length or (2048 if quick else 8192)
    n_vec = 1
    dens = [(dw, da) for dw in PE_DENSITIES for da in PE_DENSITIES]
    if quick:
        dens = [(0.05, 0.05), (0.25, 0.5), (0.5, 0.5), (1.0, 1.0)]
    rows = []
    print(f"PE benchmark: one dot product of length {length} per row, RTL under {sim}, "
          f"seed {seed}; bound = max(ceil(pairs/M), chunk pairs) + {PE_LATENCY}")
    hdr = (f"{'M':>2} {'J':>3} {'d_w':>5} {'d_a':>5} {'pairs':>6} {'chunks':>6} {'cycles':>7} "
           f"{'bound':>6} {'ratio':>6} {'cyc/ideal':>9} {'model':>6} {'util':>5}")
    for mult in (1, 2, 4):
        cfg = base.replace(multipliers=mult, join_width=max(base.join_width, 8 * mult))
        rng = np.random.default_rng(seed + mult)
        segs, meta = pe_segments(cfg, rng, dens, length, n_vec)
        print(f"\nM = {mult}, J = {cfg.join_width}: simulating {len(segs)} rows ...",
              flush=True)
        res = run_cocotb("pe", cfg, sim, "doublesparse.tb.cocotb_pe",
                         {"segments": segs, "p_w": 1.0, "p_a": 1.0, "p_ready": 1.0,
                          "seed": seed})
        print(hdr)
        for mt, r in zip(meta, res["segments"], strict=True):
            bound = pe_bound(mt["pairs"], mt["chunks"], cfg)
            ideal = -(-mt["pairs"] // mult)
            model = pe_cycles(mt["wc"], mt["ac"], cfg).cycles
            row = {"multipliers": mult, "join_width": cfg.join_width, "d_w": mt["d_w"],
                   "d_a": mt["d_a"], "length": length,
                   "cycles": r["cycles"], "pairs": mt["pairs"], "chunks": mt["chunks"],
                   "bound": bound, "ratio": r["cycles"] / bound,
                   "cycles_over_ideal": r["cycles"] / max(ideal, 1),
                   "model_cycles": model,
                   "utilization": mt["pairs"] / (mult * r["cycles"]),
                   "macs": r["counters"]["macs"], "idle_slots": r["counters"]["idle_slots"],
                   "empty_pairs": r["counters"]["empty_pairs"]}
            rows.append(row)
            print(f"{mult:2d} {cfg.join_width:3d} {mt['d_w']:5.2f} {mt['d_a']:5.2f} "
                  f"{mt['pairs']:6d} {mt['chunks']:6d} {r['cycles']:7d} {bound:6d} "
                  f"{row['ratio']:6.3f} {row['cycles_over_ideal']:9.2f} {model:6d} "
                  f"{row['utilization']:5.2f}", flush=True)
    worst = max(r["ratio"] for r in rows)
    dense_rows = [r for r in rows if r["pairs"] / r["length"] >= 1 / 8]
    worst_dense = max((r["cycles_over_ideal"] for r in dense_rows), default=0.0)
    print(f"\nworst ratio cycles/bound: {worst:.3f} (target <= 1.10); worst cycles / "
          f"ceil(pairs/M) where pairs/length >= 1/8: {worst_dense:.3f} (target <= 1.25)")
    return rows


def pe_dot_rtl(cfg: Config, w_rows: list[np.ndarray], a_rows: list[np.ndarray],
               sim: str = "verilator", p_stall: float = 1.0, seed: int = 0) -> dict:
    """Run dot products w_rows[k] . a_rows[k] through the RTL PE; the testbench checks every
    result against ``pe_golden``. Returns results, cycles, counters and the bound."""
    from ..sim.pe_model import pe_bound, pe_chunks, pe_cycles, pe_golden
    from ..tb.runner import run_cocotb

    wc, ac = pe_chunks(w_rows, cfg), pe_chunks(a_rows, cfg)
    gold = pe_golden(w_rows, a_rows, cfg)
    segs = [{"w": [[c.mask, list(c.values), c.last] for c in wc],
             "a": [[c.mask, list(c.values), c.last] for c in ac],
             "n_results": len(w_rows), "expected": [[v, int(e)] for v, e in gold]}]
    r = run_cocotb("pe", cfg, sim, "doublesparse.tb.cocotb_pe",
                   {"segments": segs, "p_w": p_stall, "p_a": p_stall, "p_ready": p_stall,
                    "seed": seed})["segments"][0]
    pairs = sum(int(np.count_nonzero((w != 0) & (a != 0)))
                for w, a in zip(w_rows, a_rows, strict=True))
    return {"results": [v for v, _ in r["results"]], "flags": [e for _, e in r["results"]],
            "golden": [v for v, _ in gold], "cycles": r["cycles"], "counters": r["counters"],
            "pairs": pairs, "chunks": len(wc), "bound": pe_bound(pairs, len(wc), cfg),
            "model_cycles": pe_cycles(wc, ac, cfg).cycles}


ENGINE_LAYERS = [
    # name, K, C, R, S, H, W, stride, pad, d_w, d_a
    ("target 3x3", 64, 64, 3, 3, 16, 16, 1, 1, 0.25, 0.5),
    ("3x3 stride 2", 64, 64, 3, 3, 16, 16, 2, 1, 0.25, 0.5),
    ("1x1", 64, 128, 1, 1, 16, 16, 1, 0, 0.25, 0.5),
    ("5x5 sparse", 32, 32, 5, 5, 12, 12, 1, 2, 0.1, 0.3),
    ("fc 256->64", 64, 256, 1, 1, 1, 1, 1, 0, 0.2, 0.5),
    ("dense 3x3", 32, 32, 3, 3, 8, 8, 1, 1, 1.0, 1.0),
]


def bench_engine(cfg: Config, sim: str = "verilator", seed: int = 1,
                 quick: bool = False) -> list[dict]:
    """Benchmark layers through the RTL engine: cycles against the model, utilization,
    speedup against a dense engine with the same multipliers, PE balance with and
    without the scheduler."""
    from ..tb.stimulus import random_tensor
    from .layer import run_layer

    rows = []
    layers = ENGINE_LAYERS[:1] if quick else ENGINE_LAYERS
    print(f"engine benchmark: {cfg.pes} PEs (one multiplier each), S = {cfg.scan_width}, "
          f"{cfg.out_lanes} output lane(s); RTL under {sim}, seed {seed}")
    hdr = (f"{'layer':14} {'d_w':>5} {'d_a':>5} {'cycles':>8} {'model':>8} {'err%':>6} "
           f"{'util':>5} {'speedup':>7} {'bound':>6} {'macs max/mean':>13} {'busy':>6} "
           f"{'unbal. cycles':>13} {'unbal. macs max/mean':>20}")
    print(hdr)
    for name, K, C, R, S, H, W, st, pad, dw, da in layers:
        rng = np.random.default_rng(seed)
        # filters of uneven density, as pruning leaves them: per-filter density drawn
        # around d_w, so that the scheduler has something to balance
        dens = np.clip(rng.normal(dw, dw / 2, K), 0.0, 1.0) if 0 < dw < 1 else np.full(K, dw)
        w = np.stack([random_tensor(rng, (C, R, S), float(d)) for d in dens])
        a = random_tensor(rng, (C, H, W), da)
        runs = {}
        for bal in (True, False):
            runs[bal] = run_layer(w, a, cfg, st, pad, sim=sim, balance=bal)
            if not runs[bal].stats.get("match"):
                raise RuntimeError(f"engine bench: {name}: RTL output wrong ({runs[bal].stats})")
        s, u = runs[True].stats, runs[False].stats
        row = dict(name=name, **s, unbalanced_cycles=u["cycles"],
                   unbalanced_macs_max_over_mean=u["macs_max_over_mean"],
                   unbalanced_busy_max_over_mean=u["busy_max_over_mean"],
                   ideal_speedup=1 / max(1e-9, s["d_w"] * s["d_a"]))
        rows.append(row)
        print(f"{name:14} {s['d_w']:5.2f} {s['d_a']:5.2f} {s['cycles']:8d} "
              f"{s['predicted_cycles']:8d} {100 * s['model_error']:+6.1f} "
              f"{s['utilization']:5.2f} {s['speedup_vs_dense']:6.2f}x "
              f"{row['ideal_speedup']:5.1f}x {s['macs_max_over_mean']:13.3f} "
              f"{s['busy_max_over_mean']:6.3f} {u['cycles']:13d} "
              f"{u['macs_max_over_mean']:20.3f}", flush=True)
    worst = max(abs(r["model_error"]) for r in rows)
    print(f"worst model error {100 * worst:.1f}% (target 5%)")
    return rows


def target_summary(rows: list[dict]) -> tuple[float, float | None, float]:
    """Of ``bench target`` rows: the worst utilization from d_w d_a = 1 down to 1/40, the
    worst at the 1/64 points (None without any), and the worst model error."""
    to40 = [r["utilization"] for r in rows if r["d_w_target"] * r["d_a_target"] > 1 / 41]
    at64 = [r["utilization"] for r in rows if r["d_w_target"] * r["d_a_target"] < 1 / 41]
    return (min(to40), min(at64) if at64 else None,
            max(abs(r["model_error"]) for r in rows))


def bench_target(cfg: Config, sim: str = "verilator", seed: int = 1, quick: bool = False,
                 fmax_mhz: float | None = None) -> list[dict]:
    """The target layer (C = K = 64, 3 x 3, 16 x 16, pad 1, random operands) over the
    density grid of the architecture study (``sim/arch_study.py:GRID``, d_w d_a from 1 down
    to 1/64 both ways round), through the RTL engine in one simulation: utilization
    (effectual MACs / (multipliers x cycles)), speedup against a dense engine with the
    same multipliers over the taps inside the image, the model's error, and with
    ``fmax_mhz`` the dense-equivalent GOP/s."""
    from ..sim.arch_study import GRID, TARGET_LAYER
    from ..tb.stimulus import random_tensor
    from .layer import LayerSpec, run_layers

    L = TARGET_LAYER
    grid = [(0.25, 0.1), (1 / 64, 1.0)] if quick else GRID
    specs = []
    for i, (dw, da) in enumerate(grid):
        rng = np.random.default_rng(seed * 1009 + i)
        specs.append(LayerSpec(random_tensor(rng, (L.K, L.C, L.R, L.S), dw),
                               random_tensor(rng, (L.C, L.H, L.W), da), L.stride, L.pad))
    print(f"target-layer benchmark: K = C = {L.K}, {L.R}x{L.S}, {L.H}x{L.W}, pad {L.pad}; "
          f"{cfg.pes} PEs (one multiplier each), S = {cfg.scan_width}; RTL under {sim}, "
          f"seed {seed}, {len(grid)} density points in one simulation ...", flush=True)
    runs = run_layers(specs, cfg, sim=sim, fmax_mhz=fmax_mhz)
    rows = []
    print(f"{'d_w':>7} {'d_a':>7} {'1/(dw da)':>9} {'cycles':>9} {'model':>9} {'err%':>6} "
          f"{'util':>5} {'speedup':>8}" + ("  GOP/s" if fmax_mhz else ""))
    for (dw, da), run in zip(grid, runs, strict=True):
        st = run.stats
        if not st.get("match"):
            raise RuntimeError(f"target bench: d_w {dw} d_a {da}: RTL output wrong")
        row = dict(st, d_w_target=dw, d_a_target=da,
                   speedup_in_image=st["dense_cycles_in_image"] / st["cycles"])
        rows.append(row)
        print(f"{dw:7.4f} {da:7.4f} {1 / (dw * da):9.1f} {st['cycles']:9d} "
              f"{st['predicted_cycles']:9d} {100 * st['model_error']:+6.1f} "
              f"{st['utilization']:5.2f} {row['speedup_in_image']:7.2f}x"
              + (f" {st['gops_dense_equivalent_at_fmax']:6.1f}" if fmax_mhz else ""),
              flush=True)
    to40, at64, err = target_summary(rows)
    print(f"worst utilization down to 1/40: {to40:.3f} (target 0.80)"
          + (f"; at 1/64: {at64:.3f} (target 0.60)" if at64 is not None else "")
          + f"; worst model error {100 * err:.1f}%")
    return rows
