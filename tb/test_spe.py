"""The scan PE (rtl/spe/) in Amaranth's simulator against a numpy reference of its
contract: for every match (set bit ``pos`` of ``andm``) the product
``lanes[pos] * wval[base + popcount(wmask below pos)]``, summed per accumulation (closed
by ``last``) and wrapped to ``acc_width`` bits.

Pairs are cut from random int8 weight and activation vectors at several densities (all
zero, about 1/64, sparse, half, dense), with pairs without a match with and without
``last`` and long accumulations; the weight chunks' packed nonzeros are written to an
``rtl.mem.RAM`` through its write port. Streams run with random input gaps and random
backpressure on ``o``; every result is compared. The throughput test checks the exact
cycle of every result with ``i`` always valid and ``o`` always ready. The counter test
checks ``macs``, ``busy_cycles`` and ``clear``.

The seed is printed (DS_SEED overrides it); a mismatch prints both sides."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from amaranth import Elaboratable, Module, signed
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.sim import Simulator

from doublesparse.rtl.mem import RAM
from doublesparse.rtl.spe import (
    ISSUE_TO_OUT,
    OUT_SLOTS,
    PAIR_QUEUE,
    SPE,
    SPE_LATENCY,
    pair_layout,
    result_layout,
)
from doublesparse.sim.config import Config

from .streams import Sink, Source, pack, seed_for, unpack

CONFIGS = {"S64": Config(), "S16": Config(scan_width=16),
           "wrap": Config(acc_width=17, max_reduction=2)}      # sums wrap at 17 bits
DENSITIES = (0.0, 1 / 64, 0.1, 0.5, 0.9, 1.0)


def _rng(name: str) -> np.random.Generator:
    seed = seed_for(name)
    print(f"seed {seed} (name {name!r}; set DS_SEED to change)")
    return np.random.default_rng(seed)


def _wrap(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _int8s(rng, n: int, density: float) -> np.ndarray:
    """n int8 values, each nonzero with probability ``density``."""
    v = rng.integers(-128, 127, n)
    v[v >= 0] += 1
    return np.where(rng.random(n) < density, v, 0).astype(np.int64)


def _bits(v: np.ndarray) -> int:
    return sum(1 << int(i) for i in np.flatnonzero(v))


def _stimulus(rng, cfg: Config, n_acc: int, *, long_every: int = 6, pool: int = 12,
              short: bool = False):
    """(pairs, wval): pairs as dicts of the pair fields, wval the weight-value memory.
    Weight chunks come from a pool (stored packed once, reused as in a convolution); each
    accumulation has its own densities; a pair without a match that does not close its
    accumulation is dropped half the time (as the feeder does). ``short``: accumulations
    of one sparse pair (a result nearly every cycle, for the result credit)."""
    S = cfg.scan_width
    wval: list[int] = []
    chunks = []
    for k in range(pool):
        w = _int8s(rng, S, DENSITIES[k % len(DENSITIES)] if k < 2 * len(DENSITIES)
                   else float(rng.choice(DENSITIES)))
        chunks.append((w, len(wval)))
        wval += [int(x) for x in w[w != 0]]
    pairs = []
    for acc in range(n_acc):
        n = int(rng.integers(12, 30)) if acc % long_every == 0 else int(rng.integers(1, 4))
        da = float(rng.choice(DENSITIES))
        if short:
            n, da = 1, float(rng.choice(DENSITIES[:3]))
        dot = 0
        for k in range(n):
            w, base = chunks[int(rng.integers(len(chunks)))]
            a = _int8s(rng, S, da)
            andm = _bits(w) & _bits(a)
            last = int(k == n - 1)
            if andm == 0 and not last and rng.random() < 0.5:
                continue
            pairs.append({"lanes": [int(x) for x in a], "wmask": _bits(w), "base": base,
                          "andm": andm, "cnt": bin(andm).count("1"), "last": last})
            dot += int(np.dot(w, a))
        pairs[-1]["dot"] = dot                 # the dense dot product, for a cross-check
    return pairs, wval


def _reference(pairs, wval, S: int, acc_width: int) -> list[int]:
    """The contract, computed with numpy: results in order."""
    mem = np.array(wval + [0], dtype=np.int64)
    out, acc = [], 0
    for p in pairs:
        wbits = np.array([p["wmask"] >> i & 1 for i in range(S)])
        match = np.flatnonzero([p["andm"] >> i & 1 for i in range(S)])
        rank = np.cumsum(wbits) - wbits                     # nonzeros below each channel
        acc += int(np.sum(np.array(p["lanes"])[match] * mem[p["base"] + rank[match]]))
        if p["last"]:
            assert acc == p["dot"], "stimulus: contract sum differs from the dot product"
            out.append(_wrap(acc, acc_width))
            acc = 0
    return out


def _pack_pair(cfg: Config, p: dict) -> int:
    lanes = sum((v & 0xFF) << (8 * i) for i, v in enumerate(p["lanes"]))
    return pack(pair_layout(cfg), lanes=lanes, wmask=p["wmask"], base=p["base"],
                andm=p["andm"], cnt=p["cnt"], last=p["last"])


class _Top(Elaboratable):
    """The PE and its weight-value RAM."""

    def __init__(self, cfg: Config):
        self.spe = SPE(cfg, checks=True)
        self.ram = RAM(signed(8), cfg.wval_mem_words)

    def elaborate(self, platform):
        m = Module()
        m.submodules.spe, m.submodules.ram = self.spe, self.ram
        wiring.connect(m, self.spe.wval_rd, self.ram.r)
        return m


async def _fill(ctx, ram, wval) -> None:
    for addr, v in enumerate(wval):
        ctx.set(ram.w.addr, addr)
        ctx.set(ram.w.data, v)
        ctx.set(ram.w.en, 1)
        await ctx.tick()
    ctx.set(ram.w.en, 0)
    await ctx.tick().repeat(2)


def _run(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


class _Run:
    """Drives one stream of pairs through the PE and checks every result as it arrives."""

    def __init__(self, top: _Top, cfg: Config, pairs, expect, rng, p_valid, p_ready):
        self.spe, self.cfg, self.pairs, self.expect = top.spe, cfg, pairs, expect
        self.src = Source(top.spe.i, [_pack_pair(cfg, p) for p in pairs], rng, p_valid)
        self.sink = Sink(top.spe.o, rng, p_ready, name="o")
        self.closes_sent = 0
        self.busy_seen = 0
        self.first_take = None
        self.valid_at: list[int] = []              # cycle each result first showed

    async def cycle(self, ctx, t: int) -> None:
        spe = self.spe
        self.src.drive(ctx)
        self.sink.drive(ctx)
        # i.ready is a flip-flop: it follows neither i.valid nor o.ready in the same cycle
        r = ctx.get(spe.i.ready)
        for sig in (spe.o.ready, spe.i.valid):
            v = ctx.get(sig)
            ctx.set(sig, 1 - v)
            assert ctx.get(spe.i.ready) == r, f"cycle {t}: i.ready follows {sig.name}"
            ctx.set(sig, v)
        n_got = len(self.sink.got)
        busy = ctx.get(spe.busy)
        self.busy_seen += busy
        assert busy or self.closes_sent == n_got, (
            f"cycle {t}: busy low with {self.closes_sent - n_got} results outstanding")
        if ctx.get(spe.o.valid) and len(self.valid_at) == n_got:
            self.valid_at.append(t)
        if ctx.get(spe.i.valid) and ctx.get(spe.i.ready):
            self.first_take = t if self.first_take is None else self.first_take
            self.closes_sent += self.pairs[self.src.sent]["last"]
        self.src.observe(ctx)
        self.sink.observe(ctx, t)
        if len(self.sink.got) > n_got:
            k = n_got
            assert k < len(self.expect), f"cycle {t}: result {k} beyond the {len(self.expect)}"
            got = unpack(result_layout(self.cfg.acc_width), self.sink.got[k])["value"]
            assert got == self.expect[k], (f"cycle {t}: result {k}: rtl {got}, "
                                           f"reference {self.expect[k]}")
        await ctx.tick()

    @property
    def done(self) -> bool:
        return len(self.sink.got) == len(self.expect)


def _stream_test(name: str, cfg: Config, pairs, wval, rng, p_valid, p_ready, check=None):
    top = _Top(cfg)
    expect = _reference(pairs, wval, cfg.scan_width, cfg.acc_width)
    run = _Run(top, cfg, pairs, expect, rng, p_valid, p_ready)
    limit = 50 + sum(max(p["cnt"], 1) for p in pairs) * 3 / min(p_valid, p_ready) ** 2

    async def bench(ctx):
        await _fill(ctx, top.ram, wval)
        t = 0
        while not run.done:
            assert t < limit, f"{name}: stuck at cycle {t}: {len(run.sink.got)} results"
            await run.cycle(ctx, t)
            t += 1
        for _ in range(ISSUE_TO_OUT + 3):             # nothing more comes, busy falls
            await run.cycle(ctx, t)
            t += 1
        assert len(run.sink.got) == len(expect), "extra results"
        assert ctx.get(top.spe.busy) == 0, "busy after the last result"
        if check:
            check(ctx, run)

    _run(top, bench)
    return run


@pytest.mark.parametrize("name", ["S64", "S16", "wrap"])
@pytest.mark.parametrize("p_valid,p_ready,short", [(0.8, 0.6, False), (1.0, 0.15, False),
                                                   (0.3, 1.0, False), (1.0, 0.2, True)])
def test_results(name, p_valid, p_ready, short) -> None:
    cfg = CONFIGS[name]
    rng = _rng(f"spe{name}{p_valid}{p_ready}{short}")
    pairs, wval = _stimulus(rng, cfg, 150 if short else 40, short=short)
    half = 1 << (cfg.acc_width - 1)
    wraps = sum(not -half <= p["dot"] < half for p in pairs if p["last"])
    assert name != "wrap" or short or wraps, "no accumulation wraps"
    run = _stream_test(name, cfg, pairs, wval, rng, p_valid, p_ready)
    print(f"{len(pairs)} pairs, {sum(p['cnt'] for p in pairs)} matches, "
          f"{len(run.sink.got)} results, {wraps} wrapped")


@pytest.mark.parametrize("name", ["S64", "S16"])
def test_throughput(name) -> None:
    """``i`` always valid, ``o`` always ready: each result is valid exactly
    ``SPE_LATENCY - 1 + (cycles of the pairs up to its last)`` after the first take,
    where a pair costs ``max(cnt, 1)`` cycles; a run of one-cycle closing pairs included."""
    cfg = CONFIGS[name]
    rng = _rng(f"throughput{name}")
    pairs, wval = _stimulus(rng, cfg, 40)
    z = {"lanes": [0] * cfg.scan_width, "wmask": 0, "base": 0, "andm": 0, "cnt": 0,
         "last": 1, "dot": 0}
    cut = next(k + 1 for k in range(len(pairs) // 2, len(pairs)) if pairs[k]["last"])
    pairs = pairs[:cut] + [dict(z) for _ in range(3 * OUT_SLOTS)] + pairs[cut:]
    cum, due = 0, []
    for p in pairs:
        cum += max(p["cnt"], 1)
        if p["last"]:
            due.append(SPE_LATENCY - 1 + cum)

    def check(ctx, run):
        got = [t - run.first_take for t in run.valid_at]
        assert got == due, "result cycles (rtl, reference):\n" + "\n".join(
            f"{k}: {g} {d}" for k, (g, d) in enumerate(zip(got, due, strict=True)) if g != d)
        print(f"{len(pairs)} pairs, cost {cum} cycles, last result at {got[-1]} "
              f"= {cum} + {SPE_LATENCY - 1}")

    _stream_test(name, cfg, pairs, wval, rng, 1.0, 1.0, check)


def test_counters() -> None:
    """``macs`` (products), ``busy_cycles`` and ``clear`` (wins over its cycle's events)."""
    cfg = CONFIGS["S16"]
    rng = _rng("counters")
    pairs_a, wval = _stimulus(rng, cfg, 12)
    # stream B: A's pairs from the first with a match on
    first = next(k for k, p in enumerate(pairs_a) if p["cnt"])
    pairs_b = pairs_a[first:]
    top = _Top(cfg)
    spe = top.spe
    exp_a = _reference(pairs_a, wval, cfg.scan_width, cfg.acc_width)

    async def counters(ctx):
        return ctx.get(spe.busy_cycles), ctx.get(spe.macs)

    async def bench(ctx):
        await _fill(ctx, top.ram, wval)
        run = _Run(top, cfg, pairs_a, exp_a, rng, 0.7, 0.7)
        t, prev, cleared = 0, (0, 0), 0
        while not run.done:
            clear = int(rng.random() < 0.02)
            ctx.set(spe.clear, clear)
            await run.cycle(ctx, t)
            now = await counters(ctx)
            assert now == (0, 0) if clear else (now[0] >= prev[0] and now[1] >= prev[1]), (
                f"cycle {t}: counters {now} after {prev}, clear {clear}")
            prev, cleared, t = now, cleared + clear, t + 1
        assert cleared > 0
        ctx.set(spe.clear, 0)
        await ctx.tick().repeat(ISSUE_TO_OUT + 2)
        # stream B: clear in the cycle its first match is issued
        src = Source(spe.i, [_pack_pair(cfg, p) for p in pairs_b], rng, 1.0)
        sink = Sink(spe.o, rng, 1.0, name="o")
        busy_after, t0 = 0, None
        for t in range(sum(max(p["cnt"], 1) for p in pairs_b) + SPE_LATENCY + 4):
            src.drive(ctx)
            sink.drive(ctx)
            ctx.set(spe.clear, int(t0 is not None and t == t0 + 1))
            if t0 is not None and t > t0 + 1:
                busy_after += ctx.get(spe.busy)
            if t0 is None and ctx.get(spe.i.valid) and ctx.get(spe.i.ready):
                t0 = t
            src.observe(ctx)
            sink.observe(ctx, t)
            await ctx.tick()
        ctx.set(spe.clear, 0)
        await ctx.tick().repeat(3)
        assert ctx.get(spe.busy) == 0 and len(sink.got) == sum(p["last"] for p in pairs_b)
        want = (busy_after, sum(p["cnt"] for p in pairs_b) - 1)
        got = await counters(ctx)
        assert got == want, f"(busy_cycles, macs): rtl {got}, reference {want}"
        print(f"busy_cycles {got[0]}, macs {got[1]}")

    _run(top, bench)


def test_verilog() -> None:
    """Verilog generation succeeds without warnings; the exported constants agree."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for cfg in CONFIGS.values():
            verilog.convert(SPE(cfg), name="spe")
    assert PAIR_QUEUE >= 2 and OUT_SLOTS > ISSUE_TO_OUT and SPE_LATENCY == ISSUE_TO_OUT + 1
