"""Drive the decoder in Amaranth's own simulator, cycle by cycle, with random input gaps and
random output backpressure, and collect what it emits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from ..rtl.decoder import Decoder
from ..sim.config import Config
from ..sim.formats import Chunk, Err

__all__ = ["DecoderRun", "run_decoder", "simulate"]


def simulate(dut, bench, vcd: str | None = None) -> None:
    """Run ``bench`` (an async testbench) against ``dut`` with a clock, optionally
    writing a VCD waveform."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


@dataclass
class DecoderRun:
    chunks: list[Chunk] = field(default_factory=list)
    errors: list[Err] = field(default_factory=list)   # one per finished image
    cycles: int = 0
    in_words: int = 0
    hung: bool = False


def run_decoder(cfg: Config, words: list[int], lasts: list[bool], *, p_valid: float = 1.0,
                p_ready: float = 1.0, seed: int = 0, max_cycles: int | None = None,
                vcd: str | None = None) -> DecoderRun:
    """Stream ``words`` into a fresh decoder; ``p_valid`` / ``p_ready`` are the chances that
    the source offers a word / the sink accepts a chunk in a cycle."""
    dut = Decoder(cfg)
    rng = np.random.default_rng(seed)
    run = DecoderRun()
    n_images = sum(lasts)
    budget = max_cycles or (50 + 4 * len(words) + 40 * n_images) * int(
        np.ceil(1 / min(p_valid, p_ready)) + 1) * 4
    J = cfg.join_width

    def take(p) -> None:
        """Collect one chunk payload; unused value lanes must be zero."""
        mask = int(p.mask)
        k = bin(mask).count("1")
        vals = tuple(int(p.values[j]) for j in range(J))
        if any(vals[k:]):
            raise AssertionError(f"nonzero unused lanes in {vals} (mask {mask:#x})")
        run.chunks.append(Chunk(mask, vals[:k], bool(p.last), bool(p.end)))

    async def bench(ctx):
        i = 0
        holding = False
        cycles = 0
        while len(run.errors) < n_images:
            if cycles >= budget:
                run.hung = True
                break
            if not holding and i < len(words) and rng.random() < p_valid:
                holding = True
                ctx.set(dut.i.payload, {"data": words[i], "last": int(lasts[i])})
            ctx.set(dut.i.valid, int(holding))
            ready = int(rng.random() < p_ready)
            ctx.set(dut.o.ready, ready)
            in_fire = holding and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid) and ready:
                take(ctx.get(dut.o.payload))
            if ctx.get(dut.done):
                run.errors.append(Err(ctx.get(dut.error)))
            await ctx.tick()
            cycles += 1
            if in_fire:
                i += 1
                holding = False
        # let the output register drain
        ctx.set(dut.i.valid, 0)
        for _ in range(4):
            ctx.set(dut.o.ready, 1)
            if ctx.get(dut.o.valid):
                take(ctx.get(dut.o.payload))
            await ctx.tick()
        run.cycles = cycles
        run.in_words = i

    simulate(dut, bench, vcd)
    return run
