"""Drive the PE in Amaranth's simulator with independent random gaps on the weight and
activation streams and random backpressure on the results."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..rtl.pe import PE
from ..sim.config import Config
from ..sim.formats import Chunk
from .amaranth_harness import simulate

__all__ = ["PERun", "run_pe"]


@dataclass
class PERun:
    results: list[tuple[int, bool]] = field(default_factory=list)
    cycles: int = 0            # first cycle offered .. last result accepted, inclusive
    counters: dict[str, int] = field(default_factory=dict)
    error: int = 0
    hung: bool = False


def _payload(c: Chunk, J: int) -> dict:
    vals = list(c.values) + [0] * (J - len(c.values))
    return {"mask": c.mask, "values": vals, "last": int(c.last), "end": 0}


def run_pe(cfg: Config, w_chunks: list[Chunk], a_chunks: list[Chunk], n_results: int, *,
           p_w: float = 1.0, p_a: float = 1.0, p_ready: float = 1.0, seed: int = 0,
           vcd: str | None = None) -> PERun:
    dut = PE(cfg, checks=True)   # timing registers asserted equal to their expressions
    rng = np.random.default_rng(seed)
    run = PERun()
    J = cfg.join_width
    budget = 200 + 8 * (len(w_chunks) + len(a_chunks)) * J // cfg.multipliers
    budget = int(budget / min(p_w, p_a, p_ready)) + 100

    async def bench(ctx):
        iw = ia = 0
        hold_w = hold_a = False
        t = 0
        last_t = 0
        while len(run.results) < n_results:
            if t >= budget:
                run.hung = True
                break
            if not hold_w and iw < len(w_chunks) and rng.random() < p_w:
                hold_w = True
                ctx.set(dut.w.payload, _payload(w_chunks[iw], J))
            if not hold_a and ia < len(a_chunks) and rng.random() < p_a:
                hold_a = True
                ctx.set(dut.a.payload, _payload(a_chunks[ia], J))
            ctx.set(dut.w.valid, int(hold_w))
            ctx.set(dut.a.valid, int(hold_a))
            ready = int(rng.random() < p_ready)
            ctx.set(dut.o.ready, ready)
            fw = hold_w and ctx.get(dut.w.ready)
            fa = hold_a and ctx.get(dut.a.ready)
            if ctx.get(dut.o.valid) and ready:
                p = ctx.get(dut.o.payload)
                run.results.append((int(p.value), bool(p.err)))
                last_t = t
            await ctx.tick()
            t += 1
            if fw:
                iw += 1
                hold_w = False
            if fa:
                ia += 1
                hold_a = False
        for _ in range(2):
            await ctx.tick()
        run.cycles = last_t + 1
        run.counters = {n: int(ctx.get(getattr(dut, n))) for n in
                        ("busy_cycles", "macs", "idle_slots", "empty_pairs")}
        run.error = int(ctx.get(dut.error))

    simulate(dut, bench, vcd)
    return run
