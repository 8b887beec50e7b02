"""Drive the engine in Amaranth's simulator through its host port (small layers; the
cocotb testbench ``cocotb_engine.py`` is the fast path for real layers)."""

from __future__ import annotations

from ..rtl.engine import DESC, REG, REGION, Engine
from ..sim.config import Config
from .amaranth_harness import simulate

__all__ = ["run_engine_amaranth"]

_NAMES = {"C": "C", "H": "H", "W": "W", "K": "K", "R": "R", "S": "S", "STRIDE": "stride",
          "PAD": "pad", "F": "F", "NCH": "nch", "HO": "Ho", "WO": "Wo"}


def run_engine_amaranth(cfg: Config, run: dict, vcd: str | None = None,
                        probe=None) -> dict:
    dut = Engine(cfg)
    nw = -(-9 * cfg.join_width // 32)
    res: dict = {}

    async def bench(ctx):
        h = dut.host

        async def write(addr, value):
            ctx.set(h.addr, addr)
            ctx.set(h.wdata, value & 0xFFFFFFFF)
            ctx.set(h.we, 1)
            await ctx.tick()
            ctx.set(h.we, 0)

        async def read(addr):
            ctx.set(h.addr, addr)
            ctx.set(h.re, 1)
            await ctx.tick()
            ctx.set(h.re, 0)
            await ctx.tick()              # the bus is registered on entry: rvalid after 2
            assert ctx.get(h.rvalid)
            v = ctx.get(h.rdata)
            return v

        for e, word in enumerate(run["act"]):
            for w in range(nw):
                await write((REGION["ACT"] << 24) | (e << 3) | w, word >> (32 * w))
        for p, words in enumerate(run["wgt"]):
            for e, word in enumerate(words):
                for w in range(nw):
                    await write(((REGION["WGT"] + p) << 24) | (e << 3) | w, word >> (32 * w))
        for p, ks in enumerate(run["kmap"]):
            for j, k in enumerate(ks):
                await write((REGION["KMAP"] << 24) | (p * run["fmax_slots"] + j), k)
        for k, (mu, sh) in enumerate(zip(run["mult"], run["shift"], strict=True)):
            await write((REGION["MULT"] << 24) | k, mu)
            await write((REGION["SHIFT"] << 24) | k, sh)
        desc = run["desc"]
        for name in DESC:
            v = desc["raw"] | desc["relu"] << 1 if name == "MODE" else desc[_NAMES[name]]
            await write(REG[name], v)
        await write(REG["CTRL"], 1)
        t = 0
        while ctx.get(dut.busy) and t < run["budget"]:
            if probe:
                probe(ctx, dut, t)
            await ctx.tick()
            t += 1
        status = await read(REG["STATUS"])
        res.update(status=status, error=(status >> 4) & 15, hung=bool(status & 1))
        if not res["hung"]:
            res["cycles"] = await read(REG["CYCLES"])
            res["out"] = []
            n = run["n_out"] if res["error"] == 0 else 0
            for i in range(n):
                v = await read((REGION["OUT"] << 24) | i)
                res["out"].append(v - (1 << 32) if v >> 31 else v)

    simulate(dut, bench, vcd)
    return res
