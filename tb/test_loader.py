"""The loader (``rtl/system/loader.py``) in Amaranth's simulator: the chunks of random
tensors (``sim.formats.to_chunks``) in under random gaps, its bus writes out under random
backpressure, against the memory contents ``sim/conv.py`` builds for the same tensors
(the host's own packing, an independent path)."""

from __future__ import annotations

import numpy as np
import pytest

from doublesparse.rtl.chunk import chunk_layout
from doublesparse.rtl.engine.layouts import pack_wgt_entry
from doublesparse.rtl.engine.regmap import REGION, REGION_SHIFT, chunk_word_bits, entry_words
from doublesparse.rtl.system.loader import Loader, write_layout
from doublesparse.rtl.system.protocol import Target
from doublesparse.sim.config import Config, ConfigError
from doublesparse.sim.conv import _act_words, _weight_chunks
from doublesparse.sim.formats import to_chunks
from doublesparse.tb.amaranth_harness import simulate
from doublesparse.tb.streams import Sink, Source, pack, seed_for, unpack

CFG = Config().replace(act_mem_chunks=64, wgt_mem_chunks=64, wval_mem_words=512)


def _rng(name: str) -> np.random.Generator:
    seed = seed_for(name)
    print(f"seed {seed} (DS_SEED={seed_for.__defaults__[0]} base)")
    return np.random.default_rng(seed)


def _sparse(rng, shape, density) -> np.ndarray:
    x = rng.integers(-128, 128, shape)
    return np.where(rng.random(shape) < density, x, 0).astype(np.int64)


def run_loader(cfg, chunks, target, pe, entry0, value0, commit, rng, p_valid, p_ready):
    """Drive one image's chunks through the loader; returns (writes, entries, values,
    too_big, finished)."""
    dut = Loader(cfg)
    lay = chunk_layout(cfg.join_width)
    items = [pack(lay, mask=c.mask, values=_packed(c.values), last=c.last, end=c.end)
             for c in chunks]
    src = Source(dut.i, items, rng, p_valid)
    sink = Sink(dut.o, rng, p_ready, name="writes")
    res = {}

    async def bench(ctx):
        ctx.set(dut.target, target)
        ctx.set(dut.pe, pe)
        ctx.set(dut.entry0, entry0)
        ctx.set(dut.value0, value0)
        ctx.set(dut.commit, commit)
        ctx.set(dut.go, 1)
        await ctx.tick()
        ctx.set(dut.go, 0)
        for t in range(200 * len(items) + 400):
            src.drive(ctx)
            sink.drive(ctx)
            src.observe(ctx)
            sink.observe(ctx, t)
            if ctx.get(dut.finished):
                break
            await ctx.tick()
        else:
            raise AssertionError(f"loader did not finish ({src.sent} of {len(items)} "
                                 f"chunks taken, {len(sink.got)} writes)")
        res.update(entries=ctx.get(dut.entries), values=ctx.get(dut.values),
                   too_big=ctx.get(dut.too_big))

    simulate(dut, bench)
    writes = [unpack(write_layout(), w) for w in sink.got]
    return writes, res


def _packed(values) -> int:
    return sum((int(v) & 0xFF) << (8 * i) for i, v in enumerate(values))


def _entries(cfg, writes, region_base, nw):
    """Entries as the host port stores them: words staged, stored at the last word."""
    wb = chunk_word_bits(cfg)
    staged, stored = {}, {}
    for w in writes:
        addr, data = int(w["addr"]), int(w["data"]) & 0xFFFF_FFFF
        if addr >> REGION_SHIFT != region_base:
            continue
        word, entry = addr & ((1 << wb) - 1), (addr & ((1 << REGION_SHIFT) - 1)) >> wb
        staged[word] = data
        if word == nw - 1:
            assert sorted(staged) == list(range(nw)), f"entry {entry}: words {sorted(staged)}"
            stored[entry] = sum(v << (32 * k) for k, v in staged.items())
            staged = {}
    assert not staged, f"words left unstored: {staged}"
    return stored


@pytest.mark.parametrize("C,p_valid,p_ready", [(64, 1.0, 1.0), (40, 0.5, 0.6),
                                                (130, 0.7, 0.8), (16, 0.4, 1.0)])
def test_loader_activations(C, p_valid, p_ready) -> None:
    rng = _rng(f"loader_act_{C}_{p_valid}")
    cfg = CFG
    a = _sparse(rng, (C, 3, 2), 0.4)
    entry0 = int(rng.integers(0, 8))
    writes, res = run_loader(cfg, to_chunks(a, cfg.join_width), Target.ACT, 0, entry0, 0,
                             1, rng, p_valid, p_ready)
    want = _act_words(a, cfg.scan_width, False)
    got = _entries(cfg, writes, REGION["ACT"], entry_words("ACT", cfg))
    assert res["entries"] == len(want) and res["values"] == 0 and not res["too_big"]
    assert sorted(got) == list(range(entry0, entry0 + len(want))), sorted(got)
    for n, w in enumerate(want):
        assert got[entry0 + n] == w, f"entry {n}: got {got[entry0 + n]:#x}, want {w:#x}"


@pytest.mark.parametrize("C,F,p_valid,p_ready", [(64, 2, 1.0, 1.0), (72, 2, 0.6, 0.5),
                                                  (24, 3, 0.8, 0.7)])
def test_loader_weights(C, F, p_valid, p_ready) -> None:
    rng = _rng(f"loader_wgt_{C}_{F}")
    cfg = CFG
    pe = int(rng.integers(0, cfg.pes))
    w = _sparse(rng, (F, C, 3, 3), 0.3)
    w[-1] = 0                                  # an empty filter slot, as make_job pads
    entry0, value0 = int(rng.integers(0, 4)), int(rng.integers(0, 20))
    tensor = w.transpose(1, 0, 2, 3)           # (C, F, R, S): channels first
    writes, res = run_loader(cfg, to_chunks(tensor, cfg.join_width), Target.WGT, pe,
                             entry0, value0, 1, rng, p_valid, p_ready)
    entries, values = [], []
    for f in range(F):
        for mask, vals in _weight_chunks(w[f], cfg.scan_width, False):
            entries.append(pack_wgt_entry(mask, min(value0 + len(values),
                                                    cfg.wval_mem_words - 1), cfg))
            values += vals
    got = _entries(cfg, writes, REGION["WGT"] + pe, entry_words("WGT", cfg))
    assert res["entries"] == len(entries) and res["values"] == len(values)
    assert not res["too_big"]
    for n, e in enumerate(entries):
        assert got.get(entry0 + n) == e, f"entry {n}: got {got.get(entry0 + n)}, want {e:#x}"
    wval = {int(x["addr"]) & ((1 << REGION_SHIFT) - 1): (int(x["data"]) & 0xFF)
            for x in writes if int(x["addr"]) >> REGION_SHIFT == REGION["WVAL"] + pe}
    want = {value0 + i: v & 0xFF for i, v in enumerate(values)}
    assert wval == want, f"weight values differ: got {wval}, want {want}"


@pytest.mark.parametrize("target", [Target.ACT, Target.WGT])
def test_loader_check_pass_counts_and_refuses_too_big(target) -> None:
    """With commit low nothing is written and the counts are the commit pass's; an image
    running past the memory raises too_big (entries, or weight values)."""
    rng = _rng(f"loader_check_{target.name}")
    cfg = CFG
    x = _sparse(rng, (64, 2, 3), 0.5)
    chunks = to_chunks(x, cfg.join_width)
    writes, res = run_loader(cfg, chunks, target, 1, 0, 0, 0, rng, 0.7, 1.0)
    assert writes == [] and res["entries"] == 6 and not res["too_big"]
    if target == Target.WGT:
        assert res["values"] == int(np.count_nonzero(x))
    # the last entry lands at the memory's last place: fits; one further: too big
    depth = cfg.wgt_mem_chunks if target == Target.WGT else cfg.act_mem_chunks
    _, ok = run_loader(cfg, chunks, target, 1, depth - 6, 0, 0, rng, 1.0, 1.0)
    _, big = run_loader(cfg, chunks, target, 1, depth - 5, 0, 0, rng, 1.0, 1.0)
    assert not ok["too_big"] and big["too_big"], (ok, big)
    if target == Target.WGT:
        nnz = int(np.count_nonzero(x))
        _, okv = run_loader(cfg, chunks, target, 1, 0, cfg.wval_mem_words - nnz, 0, rng,
                            1.0, 1.0)
        _, bigv = run_loader(cfg, chunks, target, 1, 0, cfg.wval_mem_words - nnz + 1, 0,
                             rng, 1.0, 1.0)
        assert not okv["too_big"] and bigv["too_big"], (okv, bigv)


def test_loader_needs_join_width_dividing_scan_width() -> None:
    with pytest.raises(ConfigError, match="scan_width"):
        Loader(Config().replace(scan_width=24, join_width=16, multipliers=1))
