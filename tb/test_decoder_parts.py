"""The decoder's components, each in Amaranth's simulator against a small Python reference
written from the format rules (``docs/formats.md``), not from the RTL.

Each test drives its component the way :class:`~doublesparse.rtl.decoder.Decoder` does
(commit a word only when it breaks no rule, start an image, end a vector), with words from
valid images, some corrupted, and random gaps: cycles that present a random word and commit
nothing. Every output is compared in every cycle (the merged chunks only when the word
breaks no rule, the only case the decoder uses them). Seeds are printed; ``DS_SEED``
changes them. A mismatch reports the seed, the cycle, the inputs and both sides.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from amaranth.sim import Simulator

from doublesparse.rtl.decoder import HeaderParser, RecordParser, RunLengthParser
from doublesparse.rtl.decoder.layouts import channel_width
from doublesparse.sim.config import Config
from doublesparse.sim.formats import (
    CRC32_INIT,
    HEADER_WORDS,
    MAGIC,
    MAGIC_V1,
    MAX_BODY_WORDS,
    Err,
    crc32_key,
    crc32_word,
    header_crc,
)
from doublesparse.tb.stimulus import random_image

SEED = int(os.environ.get("DS_SEED", "5"))
CONFIGS = [Config(), Config(join_width=8, run_bits=2, nm_n=1, nm_m=2, multipliers=1),
           Config(join_width=32, run_bits=6, nm_n=1, nm_m=4)]
P_VALID = 0.7        # chance that a cycle presents the next word (else a gap)
P_BAD = 0.05         # chance that a presented body word is corrupted


def _ids(cfg: Config) -> str:
    return f"J{cfg.join_width}"


def _seed(name: str, cfg: Config) -> int:
    s = SEED * 1000 + sum(map(ord, name)) + cfg.join_width
    print(f"{name}[{_ids(cfg)}]: seed {s} (DS_SEED={SEED})")
    return s


def _count(n: int, cfg: Config) -> int:
    """``n`` images at J = 16, fewer for wider chunks (the same simulated cycles)."""
    return max(n * 16 // cfg.join_width, n // 2)


def _simulate(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _s8(b: int) -> int:
    return b - 256 if b >= 128 else b


def _partial(v, J: int) -> tuple[int, tuple[int, ...], int]:
    """(mask, values, count) of a ``partial_layout`` value read from the simulator."""
    return int(v.mask), tuple(int(v.values[i]) for i in range(J)), int(v.count)


def _acc_value(acc: tuple[int, tuple[int, ...], int]) -> dict:
    return {"mask": acc[0], "values": list(acc[1]), "count": acc[2]}


def _compare(seed: int, t: int, inputs: dict, got: dict, want: dict) -> None:
    bad = [k for k in want if got[k] != want[k]]
    if bad:
        raise AssertionError(
            f"seed {seed}, cycle {t}: {', '.join(bad)} differ\n  inputs: {inputs}\n"
            + "\n".join(f"  {k}: rtl {got[k]}, ref {want[k]}" for k in bad))


def _images(rng: np.random.Generator, cfg: Config, fmts: tuple[str, ...], n: int,
            chunks: int = 3, densities: tuple[float, ...] = (0.0, 0.05, 0.3, 0.7, 1.0)):
    """``n`` valid images of the given formats, 1 to ``chunks`` * J channels, 1 or 2
    positions, densities drawn from ``densities``."""
    J = cfg.join_width
    for k in range(n):
        C = int(rng.integers(1, chunks * J + 1))
        shape = (C,) + tuple(int(v) for v in rng.integers(1, 3, size=int(rng.integers(0, 2))))
        d = float(rng.choice(densities))
        yield [int(w) for w in random_image(rng, cfg, fmts[k % len(fmts)], shape, d)[1]]


def _corrupt(rng: np.random.Generator, w: int) -> int:
    """A bit flip anywhere or in the low half-word (metadata, runs), or a random word."""
    kind = rng.integers(0, 3)
    if kind < 2:
        return w ^ (1 << int(rng.integers(0, 32 if kind == 0 else 16)))
    return int(rng.integers(0, 1 << 32))


# ==================================================================================== header
class HeaderRef:
    """The header rules and captured fields of ``docs/formats.md``."""

    FIELDS = {1: "format", 3: "channels", 7: "positions", 8: "total", 9: "body_key"}

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.hcrc = 0           # CRC register over the committed words
        self.fields = dict.fromkeys(self.FIELDS.values(), 0)

    def error(self, index: int, w: int) -> int:
        cfg = self.cfg
        if index == 0:
            return 0 if w == MAGIC else Err.BAD_MAGIC
        if index == 1:
            code, params = w & 0xFF, (w >> 8 & 0xFF, w >> 16 & 0xFF, w >> 24)
            want = {1: (cfg.join_width, 0, 0), 2: (0, cfg.run_bits, 0),
                    3: (cfg.join_width, cfg.nm_n, cfg.nm_m)}
            return 0 if want.get(code) == params else Err.BAD_FORMAT
        hi = {2: 4, 3: cfg.max_channels, 7: cfg.max_positions, 8: MAX_BODY_WORDS}
        if index in hi:
            return 0 if 1 <= w <= hi[index] else Err.BAD_HEADER
        if index == 10:     # the CRC-32 of words 0..9
            return 0 if self.hcrc ^ CRC32_INIT == w else Err.BAD_HEADER
        return 0

    def commit(self, index: int, w: int) -> None:
        self.hcrc = crc32_word(CRC32_INIT if index == 0 else self.hcrc, w)
        if index in self.FIELDS:
            self.fields[self.FIELDS[index]] = {1: w & 0xFF, 8: w + HEADER_WORDS,
                                               9: crc32_key(w)}.get(index, w)


def _headers(rng: np.random.Generator, cfg: Config, n: int):
    """Headers of valid images; some with a field set to a boundary or random value, the
    header CRC (word 10) repaired or not; a few of format version 1 (magic DSP1)."""
    hi = {2: 4, 3: cfg.max_channels, 7: cfg.max_positions, 8: MAX_BODY_WORDS}
    for img in _images(rng, cfg, ("bitmap", "rle", "nm"), n):
        h = img[:HEADER_WORDS]
        if rng.random() < 0.5:
            i = int(rng.integers(0, HEADER_WORDS - 1))
            if i in hi:
                h[i] = int(rng.choice([0, 1, hi[i], hi[i] + 1, 1 << 31]))
            elif i == 1:
                h[i] = int(rng.choice([0x1, 0x2, 0x3, 0x4]) | rng.choice(
                    [h[i] & ~0xFF, 0, cfg.join_width << 8, cfg.run_bits << 16,
                     (cfg.join_width << 8) | (cfg.nm_n << 16) | (cfg.nm_m << 24)]))
            elif i == 0 and rng.random() < 0.5:
                h[i] = MAGIC_V1
            else:
                h[i] = _corrupt(rng, h[i])
            if rng.random() < 0.7:
                h[10] = header_crc(h)
        yield h


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_header_parser(cfg: Config) -> None:
    seed = _seed("header", cfg)
    rng = np.random.default_rng(seed)
    dut = HeaderParser(cfg)
    ref = HeaderRef(cfg)
    headers = list(_headers(rng, cfg, 150))
    seen = {"errors": set(), "complete": 0}

    async def bench(ctx):
        t = 0
        for h in headers:
            index = 0
            while index < HEADER_WORDS:
                present = rng.random() < P_VALID
                w = h[index] if present else int(rng.integers(0, 1 << 32))
                ctx.set(dut.word, w)
                ctx.set(dut.index, index)
                ctx.set(dut.commit, 0)
                want = {"error": ref.error(index, w), **ref.fields}
                got = {"error": ctx.get(dut.error),
                       **{k: ctx.get(getattr(dut, k)) for k in ref.fields}}
                _compare(seed, t, {"index": index, "word": hex(w), "present": present},
                         got, want)
                ok = present and want["error"] == 0
                if ok:
                    ctx.set(dut.commit, 1)
                    ref.commit(index, w)
                    index += 1
                await ctx.tick()
                t += 1
                if present and not ok:
                    seen["errors"].add(Err(want["error"]).name)
                    break
            else:
                seen["complete"] += 1

    _simulate(dut, bench)
    print(f"{len(headers)} headers: {seen['complete']} complete, errors {sorted(seen['errors'])}")
    assert seen["complete"] > 30 and {"BAD_MAGIC", "BAD_FORMAT", "BAD_HEADER"} <= seen["errors"]


# ==================================================================================== record
class RecordRef:
    """One bitmap / N:M record word: the rules, the value placement, the place in the
    record (``docs/formats.md``)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.widx = self.meta = self.nvals = self.nwords = 0

    def start(self) -> None:
        self.widx = 0

    def outputs(self, w: int, nm: bool, rem: int, acc) -> tuple[dict, dict]:
        cfg = self.cfg
        J, N, M, PB = cfg.join_width, cfg.nm_n, cfg.nm_m, cfg.nm_pos_bits
        G = cfg.nm_groups
        first = self.widx == 0
        meta_bytes = cfg.nm_meta_bytes if nm else cfg.mask_bytes
        meta = w if first else self.meta
        bm = w & ((1 << J) - 1)
        groups = [rem > g * M for g in range(G)]
        pos = [(meta >> s * PB) & ((1 << PB) - 1) for s in range(G * N)]
        if first:
            nvals = N * sum(groups) if nm else bin(bm).count("1")
            nwords = (meta_bytes + nvals + 3) // 4
        else:
            nvals, nwords = self.nvals, self.nwords
        order = past = count = False
        if first and nm:
            order = any(groups[g] and pos[g * N + k] >= pos[g * N + k + 1]
                        for g in range(G) for k in range(N - 1))
            count = any(pos[s] and not groups[s // N] for s in range(G * N)) or bool(
                (w & ((1 << 8 * meta_bytes) - 1)) >> cfg.nm_meta_bits)
        if first and not nm:
            past = rem < J and bm >> rem != 0
        mask, vals, k = acc[0], list(acc[1]), acc[2]
        if first and not nm:
            mask = bm
        for b in range(4):
            s = self.widx * 4 + b - meta_bytes
            byte = (w >> 8 * b) & 0xFF
            if s < 0:
                continue
            if s >= nvals:
                count |= byte != 0                  # padding
                continue
            if byte == 0:
                count |= not nm                     # a zero under a mask bit
                continue
            if nm:
                ch = (s // N) * M + pos[s]
                past |= ch >= rem
                mask |= (1 << ch) & ((1 << J) - 1)
            if k < J:
                vals[k] = _s8(byte)
            k += 1
        err = (Err.NM_ORDER if order else Err.PAST_END if past
               else Err.COUNT_MISMATCH if count else 0)
        state = {"meta": meta, "nvals": nvals, "nwords": nwords}
        return {"error": int(err), "end": int(self.widx + 1 == nwords),
                "merged": (mask, tuple(vals), k)}, state

    def commit(self, out: dict, state: dict) -> None:
        if self.widx == 0:
            self.meta, self.nvals, self.nwords = state["meta"], state["nvals"], state["nwords"]
        self.widx = 0 if out["end"] else self.widx + 1


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_record_parser(cfg: Config) -> None:
    seed = _seed("record", cfg)
    rng = np.random.default_rng(seed)
    J = cfg.join_width
    dut = RecordParser(cfg)
    ref = RecordRef(cfg)
    images = list(_images(rng, cfg, ("bitmap", "nm"), _count(250, cfg)))
    empty = (0, (0,) * J, 0)
    stats = {"chunks": 0, "errors": set(), "complete": 0}

    async def bench(ctx):
        t = 0
        for img in images:
            nm, C, body = (img[1] & 0xFF) == 3, img[3], img[HEADER_WORDS:]
            base, acc, i = 0, empty, 0
            # the image's header: start, nothing committed
            ctx.set(dut.start, 1)
            ctx.set(dut.commit, 0)
            ref.start()
            await ctx.tick()
            ctx.set(dut.start, 0)
            t += 1
            while i < len(body):
                present = rng.random() < P_VALID
                w = body[i] if present else int(rng.integers(0, 1 << 32))
                if present and rng.random() < P_BAD:
                    w = _corrupt(rng, w)
                inputs = {"word": hex(w), "nm": nm, "remaining": C - base, "acc": acc}
                for k, v in (("word", w), ("nm", nm), ("remaining", C - base)):
                    ctx.set(getattr(dut, k), v)
                ctx.set(dut.acc, _acc_value(acc))
                ctx.set(dut.commit, 0)
                want, state = ref.outputs(w, nm, C - base, acc)
                got = {"error": ctx.get(dut.error), "end": ctx.get(dut.end),
                       "merged": _partial(ctx.get(dut.merged), J)}
                if want["error"]:
                    got.pop("merged")
                    want = {**want}
                    want.pop("merged")
                _compare(seed, t, inputs, got, want)
                if present and not want["error"]:
                    ctx.set(dut.commit, 1)
                    ref.commit(want, state)
                    i += 1
                    if want["end"]:
                        stats["chunks"] += 1
                        acc = empty
                        base = 0 if base + J >= C else base + J
                    else:
                        acc = want["merged"]
                await ctx.tick()
                t += 1
                if present and want["error"]:
                    stats["errors"].add(Err(want["error"]).name)
                    break
            else:
                stats["complete"] += 1

    _simulate(dut, bench)
    print(f"{len(images)} images: {stats['complete']} complete, {stats['chunks']} chunks, "
          f"errors {sorted(stats['errors'])}")
    assert stats["complete"] > 30 and {"PAST_END", "COUNT_MISMATCH"} <= stats["errors"]
    if cfg.nm_n > 1:
        assert "NM_ORDER" in stats["errors"]


# ================================================================================ run-length
class RunLengthRef:
    """One run-length word: its entries, their chunks, the rules (``docs/formats.md``)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.cmask = (1 << channel_width(cfg)) - 1
        self.pos = 0
        self.e0done = False

    def outputs(self, w: int, base: int, C: int, acc) -> tuple[dict, dict]:
        J, R = self.cfg.join_width, self.cfg.run_bits
        EW, rmask = 8 + R, (1 << R) - 1
        n = (w >> 29) & 3
        v0 = n in (1, 2) and not self.e0done
        v1 = n == 2
        val0, run0 = w & 0xFF, (w >> 8) & rmask
        val1, run1 = (w >> EW) & 0xFF, (w >> (EW + 8)) & rmask
        p0 = (self.pos + run0) & self.cmask
        p1 = ((p0 + 1 if v0 else self.pos) + run1) & self.cmask
        ents = [(v0, val0, p0), (v1, val1, p1)]

        def rel(p):
            return (p - base) & self.cmask

        def cls(p):
            return 0 if rel(p) < J else 1 if rel(p) < 2 * J else 2

        used = {0: 0, 1: EW, 2: 2 * EW}.get(n)
        count_bad = used is None or (w & ((1 << 29) - 1)) >> used != 0
        past = any(v and p >= C for v, _, p in ents)
        end_pos = p1 + 1 if v1 else p0 + 1 if v0 else self.pos
        mask, vals, k = acc[0], list(acc[1]), acc[2]
        fmask, fvals, fk = 0, [0] * J, 0
        for v, val, p in ents:
            if v and val and cls(p) == 0:
                mask |= 1 << rel(p)
                vals[k] = _s8(val)
                k += 1
            if v and val and cls(p) == 1:
                fmask |= 1 << (rel(p) - J)
                fvals[fk] = _s8(val)
                fk += 1
        out = {"error": int(Err.PAST_END if past else Err.COUNT_MISMATCH if count_bad else 0),
               "end": w >> 31, "hold": int(any(v and cls(p) == 2 for v, _, p in ents)),
               "spill": int(any(v and cls(p) != 0 for v, _, p in ents)),
               "fills": int(end_pos == base + J),
               "merged": (mask, tuple(vals), k), "fresh": (fmask, tuple(fvals), fk)}
        return out, {"v0_placed": v0 and cls(p0) != 2, "p0": p0, "end_pos": end_pos}

    def commit(self, out: dict, state: dict) -> None:
        if out["hold"]:
            if state["v0_placed"]:
                self.e0done, self.pos = True, (state["p0"] + 1) & self.cmask
        else:
            self.e0done, self.pos = False, state["end_pos"] & self.cmask


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_runlength_parser(cfg: Config) -> None:
    seed = _seed("runlength", cfg)
    rng = np.random.default_rng(seed)
    J = cfg.join_width
    dut = RunLengthParser(cfg)
    ref = RunLengthRef(cfg)
    # sparse and long vectors: entries two chunks ahead hold their word
    images = list(_images(rng, cfg, ("rle",), _count(200, cfg), chunks=6,
                          densities=(0.0, 0.02, 0.05, 0.1, 0.3, 1.0)))
    empty = (0, (0,) * J, 0)
    stats = {"chunks": 0, "holds": 0, "errors": set(), "complete": 0}

    async def bench(ctx):
        t = 0
        for img in images:
            C, body = img[3], img[HEADER_WORDS:]
            base, acc, i, tail = 0, empty, 0, False
            # between images: the previous one finished (restart), this one starts
            ctx.set(dut.start, 1)
            ctx.set(dut.restart, 1)
            ctx.set(dut.commit, 0)
            ref.e0done, ref.pos = False, 0
            await ctx.tick()
            ctx.set(dut.start, 0)
            t += 1
            while i < len(body) or tail:
                present = not tail and rng.random() < P_VALID
                w = body[i] if present else int(rng.integers(0, 1 << 32))
                if present and rng.random() < P_BAD:
                    w = _corrupt(rng, w)
                inputs = {"word": hex(w), "base": base, "channels": C, "acc": acc,
                          "pos": ref.pos, "e0done": ref.e0done, "tail": tail}
                for k, v in (("word", w), ("base", base), ("channels", C)):
                    ctx.set(getattr(dut, k), v)
                ctx.set(dut.acc, _acc_value(acc))
                ctx.set(dut.commit, 0)
                ctx.set(dut.restart, 0)
                want, state = ref.outputs(w, base, C, acc)
                got = {k: ctx.get(getattr(dut, k)) for k in want}
                got["merged"] = _partial(got["merged"], J)
                got["fresh"] = _partial(got["fresh"], J)
                if want["error"]:
                    want = {k: v for k, v in want.items() if k not in ("merged", "fresh")}
                    got = {k: got[k] for k in want}
                _compare(seed, t, inputs, got, want)
                last_chunk = C - base <= J
                restart = False
                if tail:
                    # the decoder emits the vector's remaining empty chunks
                    acc = empty
                    if last_chunk:
                        restart, tail, base = True, False, 0
                    else:
                        base += J
                elif present and not want["error"]:
                    ctx.set(dut.commit, 1)
                    ref.commit(want, state)
                    if want["spill"]:
                        stats["chunks"] += 1
                        stats["holds"] += want["hold"]
                        acc, base = want["fresh"], base + J
                        if not want["hold"]:
                            i += 1
                            tail = bool(want["end"])
                    else:
                        i += 1
                        if want["end"] or (want["fills"] and not last_chunk):
                            stats["chunks"] += 1
                            acc = empty
                            if want["end"] and last_chunk:
                                restart, base = True, 0
                            else:
                                base += J
                                tail = bool(want["end"])
                        else:
                            acc = want["merged"]
                if restart:
                    ctx.set(dut.restart, 1)
                    ref.pos = 0
                await ctx.tick()
                t += 1
                if present and want["error"]:
                    stats["errors"].add(Err(want["error"]).name)
                    break
            else:
                stats["complete"] += 1

    _simulate(dut, bench)
    print(f"{len(images)} images: {stats['complete']} complete, {stats['chunks']} chunks, "
          f"{stats['holds']} held words, errors {sorted(stats['errors'])}")
    assert stats["complete"] > 30
    if 2 * (1 << cfg.run_bits) > J:    # else no entry can land two chunks ahead
        assert stats["holds"] > 10
    assert {"PAST_END", "COUNT_MISMATCH"} <= stats["errors"]
