"""Each engine component alone in Amaranth's simulator against a small Python reference,
with random valid gaps on its inputs and random backpressure on its outputs (tb/streams.py
checks the stream rules on every output). The whole engine is tested end to end in
tb/test_engine_cocotb.py."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.sim import Simulator

from doublesparse.rtl.chunk import chunk_word_layout, pack_chunk, pack_lanes
from doublesparse.rtl.engine.address import AddressPipeline
from doublesparse.rtl.engine.broadcast import Broadcast
from doublesparse.rtl.engine.check import CHECK_LATENCY, DescriptorCheck
from doublesparse.rtl.engine.collector import ResultCollector
from doublesparse.rtl.engine.encoder import ReEncoder
from doublesparse.rtl.engine.feeder import Feeder
from doublesparse.rtl.engine.layouts import (
    STEP_LAYOUT,
    collected_layout,
    entry_layout,
    fmax_slots,
    kmap_bits,
    pack_wgt_entry,
    wgt_entry_layout,
)
from doublesparse.rtl.engine.requant import REQUANT_STAGES, Requantizer
from doublesparse.rtl.engine.sequencer import Sequencer
from doublesparse.rtl.mem import RAM, BankedMemory
from doublesparse.rtl.spe import pair_layout, result_layout
from doublesparse.sim.config import Config
from doublesparse.sim.conv import add_bias, requantize
from doublesparse.tb.streams import Sink, Source, pack, seed_for, unpack

CFG = Config(act_mem_chunks=64, wgt_mem_chunks=32, out_mem_words=256, max_filters=16,
             queue_depth=2)
GAPS = [(1.0, 1.0), (0.5, 0.7), (0.8, 0.3)]


def _rng(name: str) -> np.random.Generator:
    """The test's random generator; its seed is printed so a failure can be replayed."""
    seed = seed_for(name)
    print(f"seed {seed}")
    return np.random.default_rng(seed)


async def _fill(ctx, port, values) -> None:
    """Write ``values`` into a memory through its write port, from address 0."""
    for a, v in enumerate(values):
        ctx.set(port.addr, a)
        ctx.set(port.data.as_value() if hasattr(port.data, "as_value") else port.data, v)
        ctx.set(port.en, 1)
        await ctx.tick()
    ctx.set(port.en, 0)


def _run(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _cycle(ctx, sources, sinks, t):
    for x in sources + sinks:
        x.drive(ctx)
    for s in sources:
        s.observe(ctx)
    for s in sinks:
        s.observe(ctx, t)


def _set_desc(ctx, desc, **fields):
    for k, v in fields.items():
        ctx.set(desc[k], v)


def _out_size(n, k, stride, pad):
    return (n + 2 * pad - k) // stride + 1


# ---------------------------------------------------------------- sequencer
def ref_steps(H, W, R, S, stride, pad, nch, F):
    """Every chunk step in sequencer order: (iy, ix, c, j, r, s, last)."""
    out = []
    for oy in range(_out_size(H, R, stride, pad)):
        for ox in range(_out_size(W, S, stride, pad)):
            iy0, ix0 = oy * stride - pad, ox * stride - pad
            r0, r1 = max(0, -iy0), min(R - 1, H - 1 - iy0)
            s0, s1 = max(0, -ix0), min(S - 1, W - 1 - ix0)
            for j in range(F):
                for r in range(r0, r1 + 1):
                    for s in range(s0, s1 + 1):
                        for c in range(nch):
                            out.append((iy0 + r, ix0 + s, c, j, r, s,
                                        int(r == r1 and s == s1 and c == nch - 1)))
    return out


SHAPES = [(5, 6, 3, 3, 1, 1, 2, 2), (7, 6, 3, 3, 2, 0, 1, 3), (6, 5, 5, 5, 2, 2, 1, 1),
          (4, 4, 7, 7, 1, 3, 1, 1), (3, 4, 1, 1, 1, 0, 3, 2), (1, 1, 1, 1, 1, 0, 4, 1)]


@pytest.mark.parametrize("p_ready", [1.0, 0.4])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sequencer_steps(shape, p_ready) -> None:
    H, W, R, S, stride, pad, nch, F = shape
    rng = _rng(f"seq{shape}{p_ready}")
    dut = Sequencer()
    want = [pack(STEP_LAYOUT, iy=a, ix=b, c=c, j=j, r=r, s=s, last=la)
            for a, b, c, j, r, s, la in ref_steps(*shape)]

    async def bench(ctx):
        _set_desc(ctx, dut.desc, h=H, w=W, r=R, s=S, stride=stride, pad=pad, nch=nch, f=F,
                  ho=_out_size(H, R, stride, pad), wo=_out_size(W, S, stride, pad))
        for _ in range(4):                 # the job constants settle
            await ctx.tick()
        for sig in (dut.load, dut.prime, dut.prime, dut.start):   # as the control does
            ctx.set(sig, 1)
            await ctx.tick()
            ctx.set(sig, 0)
        sink = Sink(dut.o, rng, p_ready, "steps")
        for t in range(20 * len(want) + 50):
            _cycle(ctx, [], [sink], t)
            await ctx.tick()
            if len(sink.got) == len(want) and not ctx.get(dut.running):
                break
        for t in range(10):                 # nothing after the last step
            _cycle(ctx, [], [sink], t)
            await ctx.tick()
        got = [unpack(STEP_LAYOUT, w) for w in sink.got]
        ref = [unpack(STEP_LAYOUT, w) for w in want]
        for i, (g, r) in enumerate(zip(got, ref, strict=False)):
            assert g == r, f"step {i}: RTL {g}, reference {r}"
        assert len(got) == len(ref), f"{len(got)} steps, reference {len(ref)}"
        assert not ctx.get(dut.running)

    _run(dut, bench)


# ---------------------------------------------------------------- address pipeline
def _bench(dut, mems: dict, ports: dict):
    """A module holding ``dut`` and memories, each memory's read port connected to the
    dut's port named in ``ports``; the memories' write ports are left to the testbench."""
    m = Module()
    m.submodules.dut = dut
    for name, mem in mems.items():
        m.submodules[name] = mem
        wiring.connect(m, getattr(dut, ports[name]), mem.r)
    return m


@pytest.mark.parametrize("p_valid,p_ready", GAPS)
def test_address_pipeline(p_valid, p_ready) -> None:
    rng = _rng(f"addr{p_valid}{p_ready}")
    cfg = CFG
    H, W, R, S, stride, pad, nch, F = 4, 3, 3, 3, 1, 1, 2, 2
    dut = AddressPipeline(cfg)
    mem = BankedMemory(9 * cfg.scan_width, cfg.act_mem_chunks, bank_depth=16, stages=2)
    top = _bench(dut, {"mem": mem}, {"mem": "act_rd"})
    act = [int(x) for x in rng.integers(0, 1 << 62, cfg.act_mem_chunks)]
    steps = ref_steps(H, W, R, S, stride, pad, nch, F)
    items = [pack(STEP_LAYOUT, iy=a, ix=b, c=c, j=j, r=r, s=s, last=la)
             for a, b, c, j, r, s, la in steps]
    lay = entry_layout(cfg)
    want = [pack(lay, a=act[(iy * W + ix) * nch + c], waddr=(j * R * S + r * S + s) * nch + c,
                 last=la) for iy, ix, c, j, r, s, la in steps]

    async def bench(ctx):
        await _fill(ctx, mem.w, act)
        _set_desc(ctx, dut.desc, w=W, s=S, nch=nch)
        ctx.set(dut.rs, R * S)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        src = Source(dut.i, items, rng, p_valid)
        sink = Sink(dut.o, rng, p_ready, "entries")
        for t in range(30 * len(items)):
            _cycle(ctx, [src], [sink], t)
            await ctx.tick()
            if len(sink.got) == len(want):
                break
        for i, (g, w) in enumerate(zip(sink.got, want, strict=False)):
            assert g == w, f"entry {i}: RTL {unpack(lay, g)}, reference {unpack(lay, w)}"
        assert len(sink.got) == len(want), f"{len(sink.got)} entries of {len(want)}"

    _run(top, bench)


# ---------------------------------------------------------------- broadcast + feeders
@pytest.mark.parametrize("p_valid,p_pop", [(1.0, 1.0), (0.7, 0.5), (1.0, 0.1)])
def test_broadcast_feeders_prejoin(p_valid, p_pop) -> None:
    """The broadcast and three feeders, each with its weight memory and a model of its
    PE's pair queue that takes every pair offered and lets them go at random: every PE
    receives exactly the entries with a match or ``last``, in order, with the AND of the
    masks, its count, the lanes, the weight mask and base; a queue never holds more than
    PAIR_QUEUE pairs (the credit); the broadcast's ``ready`` is a register; drops are
    counted."""
    from doublesparse.rtl.engine.feeder import FEEDER_STAGES
    from doublesparse.rtl.spe import PAIR_QUEUE

    rng = _rng(f"bf{p_valid}{p_pop}")
    cfg = CFG.replace(pes=3)
    S, P = cfg.scan_width, cfg.pes
    top = Module()
    top.submodules.bc = bc = Broadcast(cfg)
    feeders, mems = [], []
    for p in range(P):
        f, mem = Feeder(cfg), RAM(wgt_entry_layout(cfg), cfg.wgt_mem_chunks)
        top.submodules[f"f{p}"], top.submodules[f"m{p}"] = f, mem
        wiring.connect(top, f.wgt_rd, mem.r)
        top.d.comb += [f.i.eq(bc.o[p]), bc.room[p].eq(f.room)]
        feeders.append(f)
        mems.append(mem)

    def rand_mask(d):
        return sum(1 << i for i in range(S) if rng.random() < d)

    wgt = [[(rand_mask(float(rng.choice([0.02, 0.1, 0.5]))),
             int(rng.integers(0, cfg.wval_mem_words))) for _ in range(cfg.wgt_mem_chunks)]
           for _ in range(P)]
    lay, play = entry_layout(cfg), pair_layout(cfg)
    entries = []
    for _ in range(250):
        lanes = [int(v) if rng.random() < float(rng.choice([0.02, 0.2, 0.9])) else 0
                 for v in rng.integers(-128, 128, S)]
        entries.append((lanes, int(rng.integers(0, cfg.wgt_mem_chunks)),
                        int(rng.random() < 0.2)))
    items = [pack(lay, a=pack_lanes(ln, S), waddr=wa, last=la) for ln, wa, la in entries]
    want = [[] for _ in range(P)]
    for ln, wa, la in entries:
        amask = sum(1 << i for i, v in enumerate(ln) if v)
        for p in range(P):
            wm, base = wgt[p][wa]
            andm = amask & wm
            if andm or la:
                want[p].append(pack(play, lanes=sum((v & 0xFF) << (8 * i)
                                                    for i, v in enumerate(ln)),
                                    wmask=wm, base=base, andm=andm,
                                    cnt=bin(andm).count("1"), last=la))

    async def bench(ctx):
        for p in range(P):
            await _fill(ctx, mems[p].w, [pack_wgt_entry(mk, b, cfg) for mk, b in wgt[p]])
        await ctx.tick()
        src = Source(bc.i, items, rng, p_valid)
        got = [[] for _ in range(P)]
        queue = [0] * P
        dropped = 0
        for t in range(60 * len(items)):
            src.drive(ctx)
            pops = [int(queue[p] > 0 and rng.random() < p_pop) for p in range(P)]
            for p in range(P):
                ctx.set(feeders[p].pe_pop, pops[p])
            src.observe(ctx)
            for p in range(P):
                if ctx.get(feeders[p].o.valid):
                    got[p].append(ctx.get(feeders[p].o.payload.as_value()))
                    queue[p] += 1
                queue[p] -= pops[p]
                assert queue[p] <= PAIR_QUEUE, f"cycle {t}: PE {p} queue holds {queue[p]}"
                dropped += ctx.get(feeders[p].dropped)
            await ctx.tick()
            if src.done and all(len(g) == len(w) for g, w in zip(got, want, strict=True)):
                break
        for _ in range(FEEDER_STAGES + 2):
            for p in range(P):
                dropped += ctx.get(feeders[p].dropped)
                assert not ctx.get(feeders[p].o.valid), f"PE {p}: a pair after the end"
            await ctx.tick()
        for p in range(P):
            for i, (g, w) in enumerate(zip(got[p], want[p], strict=False)):
                assert g == w, (f"PE {p} pair {i}: RTL {unpack(play, g)}, reference "
                                f"{unpack(play, w)}")
            assert len(got[p]) == len(want[p]), f"PE {p}: {len(got[p])} of {len(want[p])}"
        assert dropped == P * len(entries) - sum(map(len, want)), dropped

    _run(top, bench)


# ---------------------------------------------------------------- collector
@pytest.mark.parametrize("p_valid", [1.0, 0.5, 0.1])
@pytest.mark.parametrize("lanes", [1, 2])
def test_collector_slots_and_pixels(p_valid, lanes) -> None:
    """The collector of the last lane: its PEs' results with the KMAP slots of those
    PEs (global PE index) and the pixels."""
    rng = _rng(f"coll{p_valid}{lanes}")
    cfg = CFG.replace(pes=3 * lanes, out_lanes=lanes)
    n, first = cfg.pes // lanes, (lanes - 1) * (cfg.pes // lanes)
    dut = ResultCollector(cfg, first=first)
    F, npix, FM = 2, 7, fmax_slots(cfg)
    rl, cl = result_layout(cfg.acc_width), collected_layout(cfg)
    vals = [[int(v) for v in rng.integers(-2**31, 2**31, F * npix)] for _ in range(n)]
    want = {p: [pack(cl, acc=v, slot=(first + p) * FM + i % F, pix=i // F)
                for i, v in enumerate(vals[p])] for p in range(n)}

    async def bench(ctx):
        ctx.set(dut.desc.f, F)
        await ctx.tick()
        await ctx.tick()
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        srcs = [Source(dut.i[p], [pack(rl, value=v) for v in vals[p]], rng, p_valid)
                for p in range(n)]
        sink = Sink(dut.o, rng, 1.0, "collected")
        for t in range(200 * F * npix):
            _cycle(ctx, srcs, [sink], t)
            await ctx.tick()
            if len(sink.got) == n * F * npix:
                break
        by_pe = {p: [g for g in sink.got if unpack(cl, g)["slot"] // FM == first + p]
                 for p in range(n)}
        for p in range(n):
            for i, (g, w) in enumerate(zip(by_pe[p], want[p], strict=False)):
                assert g == w, f"PE {p} result {i}: RTL {unpack(cl, g)}, want {unpack(cl, w)}"
            assert len(by_pe[p]) == len(want[p]), f"PE {p}: {len(by_pe[p])} results"

    _run(dut, bench)


# ---------------------------------------------------------------- requantizer
@pytest.mark.parametrize("mode", [0, 1, 2])      # requant, raw, requant + ReLU
@pytest.mark.parametrize("lanes", [1, 4])
def test_requantizer(mode, lanes) -> None:
    """One lane's requantizer: with L lanes its filters are those with k mod L equal to
    the lane (here lane L - 1), written at (k // L) * Ho * Wo + pixel of its bank."""
    rng = _rng(f"rq{mode}{lanes}")
    cfg = CFG.replace(out_lanes=lanes)
    dut = Requantizer(cfg)
    kmem = RAM(kmap_bits(cfg), cfg.pes * fmax_slots(cfg))
    mmem = RAM(signed(16), cfg.max_filters)
    smem = RAM(6, cfg.max_filters)
    bmem = RAM(signed(32), cfg.max_filters)
    top = _bench(dut, {"kmap": kmem, "mult": mmem, "shift": smem, "bias": bmem},
                 {"kmap": "kmap_rd", "mult": "mult_rd", "shift": "shift_rd",
                  "bias": "bias_rd"})
    K, npix, nslots = 10, 5, cfg.pes * fmax_slots(cfg)
    # the lane's filters, and some empty slots (>= K)
    kmap = [int(k) for k in rng.integers(0, K + 3, nslots)]
    kmap = [k if k >= K else (k // lanes) * lanes + lanes - 1 for k in kmap]
    kmap = [k if k < K or k >= K + 3 else K + 1 for k in kmap]
    mult = [int(v) for v in rng.integers(-300, 300, cfg.max_filters)]
    shift = [int(v) for v in rng.integers(0, 20, cfg.max_filters)]
    # small biases, and full-range ones whose sums with the accumulators wrap
    bias = [int(rng.integers(-2**31, 2**31)) if rng.random() < 0.3
            else int(rng.integers(-3000, 3000)) for _ in range(cfg.max_filters)]
    cl = collected_layout(cfg)
    res = [(int(rng.integers(-2**31, 2**31)) if rng.random() < 0.3
            else int(rng.integers(-5000, 5000)), int(rng.integers(0, nslots)),
            int(rng.integers(0, npix))) for _ in range(300)]
    want = []
    for acc, slot, pix in res:
        k = kmap[slot]
        if k >= K:
            continue
        b = add_bias(np.array([acc]), np.array([bias[k]]), cfg.acc_width)
        if mode == 1:
            y = int(b[0]) & 0xFFFFFFFF
        else:
            y = int(requantize(b, np.array([mult[k]]), np.array([shift[k]]),
                               relu=mode == 2)[0]) & 0xFFFFFFFF
        want.append(((k // lanes) * npix + pix, y))

    async def bench(ctx):
        for mem, vals in ((kmem, kmap), (mmem, mult), (smem, shift), (bmem, bias)):
            await _fill(ctx, mem.w, vals)
        _set_desc(ctx, dut.desc, k=K, mode=mode)
        ctx.set(dut.npix, npix)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        src = Source(dut.i, [pack(cl, acc=a, slot=s, pix=p) for a, s, p in res], rng, 0.6)
        got, retired = [], 0
        for _ in range(4 * len(res) + 4 * REQUANT_STAGES):
            src.drive(ctx)
            src.observe(ctx)
            if ctx.get(dut.out_wr.en):
                got.append((ctx.get(dut.out_wr.addr), ctx.get(dut.out_wr.data)))
            retired += ctx.get(dut.retired)
            await ctx.tick()
        assert retired == len(res), f"{retired} results retired of {len(res)}"
        for i, (g, w) in enumerate(zip(got, want, strict=False)):
            assert g == w, f"write {i}: RTL (addr, data) = ({g[0]}, {g[1]:#x}), " \
                           f"reference ({w[0]}, {w[1]:#x})"
        assert len(got) == len(want), f"{len(got)} writes, reference {len(want)}"

    _run(top, bench)


# ---------------------------------------------------------------- re-encoder
@pytest.mark.parametrize("K,Ho,Wo,room", [(20, 3, 2, 64), (16, 2, 2, 64), (5, 1, 3, 64),
                                          (33, 2, 3, 10)])
@pytest.mark.parametrize("lanes", [1, 4])
def test_reencoder_chunks(K, Ho, Wo, room, lanes) -> None:
    """The output memory holds (k, pixel) at regmap.out_index (lanes interleaved)."""
    from doublesparse.rtl.engine.regmap import out_index

    rng = _rng(f"enc{K}{Ho}{Wo}{lanes}")
    cfg = CFG.replace(act_mem_chunks=max(16, room), out_lanes=lanes)
    J = cfg.scan_width
    dut = ReEncoder(cfg)
    out = BankedMemory(32, cfg.out_mem_words, bank_depth=64, stages=2)
    top = Module()
    top.submodules.dut, top.submodules.out = dut, out
    # the host port gives the encoder the read port with en always high
    top.d.comb += [out.r.en.eq(1), out.r.addr.eq(dut.out_rd.addr),
                   dut.out_rd.data.eq(out.r.data)]
    y = rng.integers(-128, 128, (K, Ho, Wo)) * (rng.random((K, Ho, Wo)) < 0.4)
    y = y.astype(np.int8)
    yp = np.zeros((-(-K // J) * J, Ho * Wo), np.int64)
    yp[:K] = y.reshape(K, -1)
    want = [pack_lanes([int(v) for v in yp[c0:c0 + J, pix]], J)
            for pix in range(Ho * Wo) for c0 in range(0, K, J)]
    fits = len(want) <= cfg.act_mem_chunks

    async def bench(ctx):
        flat = [0] * cfg.out_mem_words
        for k in range(K):
            for pix in range(Ho * Wo):
                flat[out_index(k, pix, Ho * Wo, lanes)] = int(y[k].reshape(-1)[pix]) & 0xFFFFFFFF
        await _fill(ctx, out.w, flat)
        _set_desc(ctx, dut.desc, k=K, ho=Ho, wo=Wo)
        await ctx.tick()
        ctx.set(dut.go, 1)
        await ctx.tick()
        ctx.set(dut.go, 0)
        writes, overflow = {}, False
        for _ in range(-(-K // J) * J * Ho * Wo + 50):
            if ctx.get(dut.act_wr.en):
                writes[ctx.get(dut.act_wr.addr)] = ctx.get(dut.act_wr.data)
            overflow |= bool(ctx.get(dut.overflow))
            if ctx.get(dut.finished) or overflow:
                break
            await ctx.tick()
        assert overflow == (not fits), f"overflow {overflow}, chunks {len(want)}"
        if fits:
            assert ctx.get(dut.finished)
            got = [writes.get(i) for i in range(len(want))]
            for i, (g, w) in enumerate(zip(got, want, strict=True)):
                lay = chunk_word_layout(J)
                assert g == w, f"chunk {i}: RTL {g and unpack(lay, g)}, reference " \
                               f"{unpack(lay, w)}"
            assert len(writes) == len(want)

    _run(top, bench)


# ---------------------------------------------------------------- descriptor check
def ref_check(cfg, d):
    """(bad_shape, bad_desc, too_big) of descriptor ``d`` (a dict of ints), written
    independently of the RTL from docs/engine.md."""
    J, P = cfg.scan_width, cfg.pes
    C, H, W, K, R, S = (d[n] for n in "chw krs".replace(" ", ""))
    st, pad = d["stride"], d["pad"]
    shape = (0 in (C, H, W, K, R, S) or R > 7 or S > 7 or st not in (1, 2) or pad >= R
             or pad >= S or H + 2 * pad < R or W + 2 * pad < S)
    ho = (H + 2 * pad - R) // (2 if st == 2 else 1) + 1 if H + 2 * pad >= R else None
    wo = (W + 2 * pad - S) // (2 if st == 2 else 1) + 1 if W + 2 * pad >= S else None
    bad = (d["nch"] != -(-C // J) or d["f"] != -(-K // P) or d["ho"] != ho or d["wo"] != wo)
    big = (any(v >> 16 for k, v in d.items() if k != "mode") or K > cfg.max_filters
           or C > cfg.max_channels
           or H * W * d["nch"] > cfg.act_mem_chunks
           or d["f"] * R * S * d["nch"] > cfg.wgt_mem_chunks
           or -(-K // cfg.out_lanes) * cfg.out_lanes * d["ho"] * d["wo"] > cfg.out_mem_words
           or C * R * S > cfg.max_reduction)
    return int(shape), int(bad), int(big)


def _random_desc(rng, cfg):
    J, P = cfg.scan_width, cfg.pes
    C, H, W, K = (int(rng.integers(1, n)) for n in (80, 12, 12, 40))
    R, S = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    st, pad = int(rng.integers(1, 3)), int(rng.integers(0, min(R, S)))
    d = {"c": C, "h": H, "w": W, "k": K, "r": R, "s": S, "stride": st, "pad": pad,
         "nch": -(-C // J), "f": -(-K // P), "ho": max(0, (H + 2 * pad - R) // st + 1),
         "wo": max(0, (W + 2 * pad - S) // st + 1), "mode": 0}
    kind = rng.integers(0, 6)
    name = list(d)[int(rng.integers(0, len(d) - 1))]
    if kind == 1:
        d[name] += int(rng.choice([-1, 1]))
    elif kind == 2:
        d[name] = int(rng.choice([0, 8, 1 << 16, 0xFFFFFFFF, 3]))
    d = {k: v & 0xFFFFFFFF for k, v in d.items()}
    return d


def test_descriptor_check() -> None:
    rng = _rng("check")
    cfg = Config()
    dut = DescriptorCheck(cfg)
    cases = [_random_desc(rng, cfg) for _ in range(300)]

    async def bench(ctx):
        seen = set()
        for i, d in enumerate(cases):
            _set_desc(ctx, dut.desc, **d)
            for _ in range(CHECK_LATENCY):
                await ctx.tick()
            got = tuple(ctx.get(x) for x in (dut.bad_shape, dut.bad_desc, dut.too_big))
            want = ref_check(cfg, d)
            # the control takes the first flag set (BAD_SHAPE, BAD_DESC, TOO_BIG), so the
            # contract is the first flag: later ones are don't-care behind it
            first = (got.index(1) + 1) if 1 in got else 0
            ref_first = (want.index(1) + 1) if 1 in want else 0
            assert first == ref_first, (f"case {i} {d}: RTL flags (shape, desc, big) {got}, "
                                        f"reference {want}")
            seen.add(want)
            if i < 5 or rng.random() < 0.02:
                print(f"case {i}: {d} -> {want}")
            if want == (0, 0, 0):
                assert ctx.get(dut.rs) == d["r"] * d["s"]
                assert ctx.get(dut.npix) == d["ho"] * d["wo"]
                assert ctx.get(dut.total) == d["ho"] * d["wo"] * d["f"] * cfg.pes
        # every flag was exercised, alone or with others
        for k in range(3):
            assert any(s[k] for s in seen), f"flag {k} never raised in {len(cases)} cases"
        assert (0, 0, 0) in seen

    _run(dut, bench)


# ---------------------------------------------------------------- control
class ControlModel:
    """The control's states and outputs, cycle by cycle, from the docs."""

    SETTLE = 16

    def __init__(self):
        self.state, self.busy, self.done, self.error, self.cycles = "IDLE", 0, 0, 0, 0
        self.settle = self.results = self.total = 0
        self.pe_clear = self.flush = 0

    def step(self, i):
        """Outputs this cycle (comb strobes), then the state after the clock edge."""
        comb = {"load": 0, "prime": 0, "go": 0, "enc_go": 0}
        nxt = dict(busy=self.busy, done=self.done, error=self.error, cycles=self.cycles,
                   state=self.state, settle=self.settle, total=self.total, pe_clear=0,
                   results=self.results + i["retired"], flush=int(i["abort"] and self.busy))
        if self.state == "IDLE":
            if i["start"]:
                nxt.update(done=0, error=0, busy=1, settle=0, state="SETTLE")
            elif i["encode"]:
                if i["raw"]:
                    nxt.update(done=1, error=5)
                else:
                    nxt.update(done=0, error=0, busy=1, state="ENCODE")
                    comb["enc_go"] = 1
        elif self.state == "SETTLE":
            nxt["settle"] = self.settle + 1
            comb["load"] = int(self.settle == self.SETTLE - 3)
            comb["prime"] = int(self.settle >= self.SETTLE - 2)
            if self.settle == self.SETTLE - 1:
                nxt["state"] = "CHECK"
        elif self.state == "CHECK":
            code = 1 if i["bad_shape"] else 2 if i["bad_desc"] else 3 if i["too_big"] else 0
            if code:
                nxt.update(error=code, busy=0, done=1, state="IDLE")
            else:
                comb["go"] = 1
                nxt.update(pe_clear=1, cycles=0, results=0, total=i["total"] & 0xFFFFFFFF,
                           state="RUN")
        elif self.state == "RUN":
            nxt["cycles"] = self.cycles + 1
            if self.results == self.total and not i["seq_running"]:
                nxt.update(busy=0, done=1, error=4 if i["pe_fault"] else 0, state="IDLE")
        elif self.state == "ENCODE":
            if i["enc_overflow"]:
                nxt.update(busy=0, done=1, error=3, state="IDLE")
            elif i["enc_finished"]:
                nxt.update(busy=0, done=1, state="IDLE")
        if self.state != "IDLE" and i["abort"]:       # an abort overrides the state's move
            nxt.update(busy=0, done=1, error=6, state="IDLE")
        out = dict(busy=self.busy, done=self.done, error=self.error, cycles=self.cycles,
                   pe_clear=self.pe_clear, flush=self.flush, **comb)
        for k, v in nxt.items():
            setattr(self, k, v)
        return out


def test_control_against_model() -> None:
    from doublesparse.rtl.engine.control import SETTLE_CYCLES, Control
    assert ControlModel.SETTLE == SETTLE_CYCLES
    rng = _rng("control")
    dut = Control()
    model = ControlModel()
    names = ("start", "encode", "raw", "bad_shape", "bad_desc", "too_big", "seq_running",
             "retired", "pe_fault", "enc_overflow", "enc_finished", "abort")
    seen = set()

    async def bench(ctx):
        running = 0
        for t in range(6000):
            i = {n: int(rng.random() < 0.1) for n in names}
            i["bad_shape"] &= int(rng.random() < 0.3)
            i["total"] = int(rng.integers(0, 6))
            # the sequencer runs for a while after go; results retire now and then
            running = max(0, running - 1)
            if model.state == "CHECK":
                running = int(rng.integers(0, 8))
            i["seq_running"] = int(running > 0)
            i["enc_overflow"] &= int(rng.random() < 0.2)
            i["abort"] &= int(model.busy and rng.random() < 0.3)   # the host's: while busy
            for n, v in i.items():
                ctx.set(getattr(dut, n), v)
            want = model.step(i)
            got = {n: ctx.get(getattr(dut, n)) for n in want}
            assert got == want, f"cycle {t}, inputs {i}: RTL {got}, model {want}"
            seen.add((want["error"], want["done"]))
            await ctx.tick()
        assert {(c, 1) for c in range(7)} <= seen, f"not every outcome reached: {seen}"

    _run(dut, bench)


# ---------------------------------------------------------------- host port
def test_host_port_writes_and_reads() -> None:
    """Random bus traffic (descriptor and CTRL writes, chunk words to ACT and every WGT,
    KMAP / MULT / SHIFT / BIAS words, CSR and OUT reads) with ``busy`` toggling at random: every
    memory write port shows exactly the writes a Python model of the map expects, one
    cycle after the bus write (none while busy), and every read returns its register's
    value ``READ_LATENCY`` cycles after ``re``."""
    from doublesparse.rtl.chunk import words_of
    from doublesparse.rtl.engine.host import READ_LATENCY, HostPort
    from doublesparse.rtl.engine.regmap import (
        DESC,
        REG,
        REGION,
        REGION_SHIFT,
        chunk_address,
        chunk_word_bits,
        entry_words,
    )

    rng = _rng("host")
    cfg = CFG.replace(pes=3)
    J, P = cfg.scan_width, cfg.pes
    NW, NWW, WB = entry_words("ACT", cfg), entry_words("WGT", cfg), chunk_word_bits(cfg)
    dut = HostPort(cfg)
    status = {"done": 1, "error": 3, "cycles": 123456}
    pe_busy = [int(x) for x in rng.integers(0, 1 << 32, P)]
    pe_macs = [int(x) for x in rng.integers(0, 1 << 28, P)]
    # operations: ("w", addr, data) or ("r", addr, None)
    ops = []
    for _ in range(400):
        kind = rng.integers(0, 6)
        if kind == 0:
            name = str(rng.choice(DESC))
            ops.append(("w", REG[name], int(rng.integers(0, 1 << 32))))
        elif kind == 1:                    # a whole chunk, words in order
            region, pe = ("ACT", 0) if rng.random() < 0.5 else ("WGT", int(rng.integers(0, P)))
            e = int(rng.integers(0, 16))
            word = pack_chunk(sum(1 << i for i in range(J) if rng.random() < 0.5),
                              [int(v) for v in rng.integers(-128, 128, J)], J)
            n = entry_words(region, cfg)
            ops += [("w", chunk_address(region, e, w, cfg, pe=pe), v)
                    for w, v in enumerate(words_of(word, 32 * n))]
        elif kind == 2:
            region = str(rng.choice(["KMAP", "MULT", "SHIFT", "BIAS", "WVAL"]))
            base = REGION[region] + (int(rng.integers(0, P)) if region == "WVAL" else 0)
            ops.append(("w", base << REGION_SHIFT | int(rng.integers(0, 16)),
                        int(rng.integers(0, 1 << 32))))
        elif kind == 3:
            ops.append(("w", REG["CTRL"], int(rng.integers(0, 8))))
        elif kind == 4:
            name = str(rng.choice(list(REG)))
            addr = REG[name] + (int(rng.integers(0, P)) if name.startswith("PE_") else 0)
            ops.append(("r", addr, None))
        else:
            ops.append(("r", REGION["OUT"] << REGION_SHIFT | int(rng.integers(0, 200)), None))

    async def bench(ctx):
        for k, v in status.items():
            ctx.set(getattr(dut, k), v)
        for p in range(P):
            ctx.set(dut.pe_busy[p], pe_busy[p])
            ctx.set(dut.pe_macs[p], pe_macs[p])
        desc = {n: 0 for n in DESC}
        staging = [0] * NW
        reads = []            # (cycle due, expected rdata or ("out", data cycle))
        busy = 0
        checked = {"mem": 0, "read": 0, "cmd": 0}
        queue = list(ops)
        last_op = None
        ignored = 0           # writes ignored while busy, since the last start / encode
        for t in range(3 * len(ops) + 20):
            # inputs of this cycle
            busy_now = int(rng.random() < 0.15)
            ctx.set(dut.busy, busy_now)
            out_word = int(rng.integers(0, 1 << 32))
            ctx.set(dut.out_rd.data, out_word)
            ctx.set(dut.enc_rd.en, 0)
            op = queue.pop(0) if queue and rng.random() < 0.7 else None
            ctx.set(dut.host.we, int(op is not None and op[0] == "w"))
            ctx.set(dut.host.re, int(op is not None and op[0] == "r"))
            if op is not None:
                ctx.set(dut.host.addr, op[1])
                ctx.set(dut.host.wdata, op[2] or 0)
                if op[0] == "r" and op[1] >> REGION_SHIFT == REGION["OUT"]:
                    assert ctx.get(dut.out_rd.addr) == op[1] & 0xFF, "OUT address not passed"
            # the bus write of the previous cycle takes effect now (busy of this cycle)
            exp = {"act": None, "kmap": None, "mult": None, "shift": None, "bias": None,
                   "start": 0,
                   "encode": 0, "abort": 0, **{f"wgt{p}": None for p in range(P)},
                   **{f"wval{p}": None for p in range(P)}}
            if last_op is not None and last_op[0] == "w":
                _, a, v = last_op
                region, off = a >> REGION_SHIFT, a & ((1 << REGION_SHIFT) - 1)
                if region == 0:
                    name = next((n for n in DESC if REG[n] == a), None)
                    if name and not busy_now:
                        desc[name] = v
                    if a == REG["CTRL"] and not busy_now:
                        exp["start"], exp["encode"] = v & 1, int(v & 3 == 2)
                    if a == REG["CTRL"] and busy_now:
                        exp["abort"] = v >> 2 & 1
                elif not busy_now:
                    # any memory write passes the chunk staging register: its word slot
                    # (if it names one) is replaced
                    w = off & ((1 << WB) - 1)
                    chunk = staging[:]
                    if w < NW:
                        chunk[w] = v
                    staging = chunk
                    names = {REGION["KMAP"]: "kmap", REGION["MULT"]: "mult",
                             REGION["SHIFT"]: "shift", REGION["BIAS"]: "bias"}
                    word = sum(x << (32 * i) for i, x in enumerate(chunk))
                    if region in names:
                        width = {"kmap": kmap_bits(cfg), "mult": 16, "shift": 6,
                                 "bias": 32}[names[region]]
                        exp[names[region]] = (off & 0xF, v & ((1 << width) - 1))
                    elif region >= REGION["WVAL"]:
                        exp[f"wval{region - REGION['WVAL']}"] = (off, v & 0xFF)
                    elif region == REGION["ACT"] and w == NW - 1:
                        exp["act"] = (off >> WB, word & ((1 << len(dut.act_wr.data)) - 1))
                    elif region >= REGION["WGT"] and w == NWW - 1:
                        exp[f"wgt{region - REGION['WGT']}"] = (
                            off >> WB, word & ((1 << wgt_entry_layout(cfg).size) - 1))
                if busy_now and not exp["abort"]:
                    ignored += 1
                elif exp["start"] or exp["encode"]:
                    ignored = 0
            ports = {"act": dut.act_wr, "kmap": dut.kmap_wr, "mult": dut.mult_wr,
                     "shift": dut.shift_wr, "bias": dut.bias_wr,
                     **{f"wgt{p}": dut.wgt_wr[p] for p in range(P)},
                     **{f"wval{p}": dut.wval_wr[p] for p in range(P)}}
            for key, port in ports.items():
                en = ctx.get(port.en)
                data = port.data.as_value() if hasattr(port.data, "as_value") else port.data
                got = (ctx.get(port.addr), ctx.get(data) & ((1 << len(data)) - 1)) \
                    if en else None
                if got is not None and exp[key] is not None:
                    exp[key] = (exp[key][0] & ((1 << len(port.addr)) - 1), exp[key][1])
                assert got == exp[key], f"cycle {t}: {key} write RTL {got}, model {exp[key]}"
                checked["mem"] += en
            for key in ("start", "encode", "abort"):
                assert ctx.get(getattr(dut, key)) == exp[key], f"cycle {t}: {key}"
                checked["cmd"] += exp[key]
                checked[key] = checked.get(key, 0) + exp[key]
            # reads: value due READ_LATENCY cycles after re, from the registers as they
            # stand the cycle after re
            if last_op is not None and last_op[0] == "r":
                a = last_op[1]
                if a >> REGION_SHIFT == REGION["OUT"]:
                    reads.append((t + READ_LATENCY - 1, "out"))
                else:
                    vals = {REG[n]: desc[n] for n in DESC}
                    vals[REG["STATUS"]] = busy_now | status["done"] << 1 | status["error"] << 4
                    vals[REG["CYCLES"]] = status["cycles"]
                    vals[REG["MACS"]] = sum(pe_macs) & 0xFFFFFFFF
                    vals[REG["IGNORED"]] = ignored
                    for p in range(P):
                        vals[REG["PE_BUSY"] + p], vals[REG["PE_MACS"] + p] = pe_busy[p], pe_macs[p]
                    reads.append((t + READ_LATENCY - 1, vals.get(a, 0)))
            rvalid = ctx.get(dut.host.rvalid)
            due = [r for r in reads if r[0] == t]
            assert rvalid == len(due), f"cycle {t}: rvalid {rvalid}, reads due {len(due)}"
            if due:
                want = out_word if due[0][1] == "out" else due[0][1]
                got = ctx.get(dut.host.rdata)
                assert got == want, f"cycle {t}: read RTL {got:#x}, model {want:#x}"
                checked["read"] += 1
            last_op = op
            busy = busy_now
            await ctx.tick()
        assert not queue and checked["mem"] > 100 and checked["read"] > 50 \
            and checked["cmd"] > 3 and checked["abort"] > 0 and checked["start"] > 0, checked
        _ = busy

    _run(dut, bench)
