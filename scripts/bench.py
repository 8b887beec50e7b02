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
