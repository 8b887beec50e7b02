"""CRC-32 of image words: the software functions (``sim/formats.py``) and the Amaranth
helpers (``rtl/decoder/crc.py``) against ``zlib.crc32`` and a bit-serial register written
here. Seeds are printed; ``DS_SEED`` changes them."""

from __future__ import annotations

import os
import zlib

import numpy as np
from amaranth import Module, Signal
from amaranth.sim import Simulator

from doublesparse.rtl.decoder.crc import crc32_key as rtl_key
from doublesparse.rtl.decoder.crc import crc32_step as rtl_step
from doublesparse.sim.formats import (
    CRC32_INIT,
    MASK32,
    crc32_inverse_matrix,
    crc32_key,
    crc32_matrix,
    crc32_word,
    crc32_words,
)

SEED = int(os.environ.get("DS_SEED", "11"))


def _seed(name: str) -> int:
    s = SEED * 1000 + sum(map(ord, name))
    print(f"{name}: seed {s} (DS_SEED={SEED})")
    return s


def _zlib(words) -> int:
    return zlib.crc32(np.asarray(words, dtype=np.uint64).astype("<u4").tobytes())


def _bit_serial(state: int, word: int) -> int:
    """The reflected register one bit at a time (the textbook loop), a byte at a time from
    the word's least significant byte."""
    for k in range(4):
        state ^= word >> (8 * k) & 0xFF
        for _ in range(8):
            state = state >> 1 ^ (0xEDB88320 if state & 1 else 0)
    return state


def _check(what: str, got: int, want: int) -> None:
    assert got == want, f"{what}: ours {got:#010x}, reference {want:#010x}"


def test_crc32_words_is_zlib() -> None:
    rng = np.random.default_rng(_seed("zlib"))
    cases = [[], [0], [MASK32], [0x32505344], [1, 2, 3]]
    cases += [[int(v) for v in rng.integers(0, 1 << 32, size=int(n))]
              for n in rng.integers(1, 300, size=40)]
    for words in cases:
        _check(f"crc32_words of {len(words)} words {words[:4]}", crc32_words(words),
               _zlib(words))
        # continuing a CRC, as zlib.crc32(data, value) does
        h = len(words) // 2
        _check(f"crc32_words continued at word {h} of {len(words)}",
               crc32_words(words[h:], crc32_words(words[:h])), _zlib(words))


def test_word_update_is_the_bit_serial_register() -> None:
    rng = np.random.default_rng(_seed("serial"))
    for s, w in rng.integers(0, 1 << 32, size=(2000, 2)):
        s, w = int(s), int(w)
        _check(f"crc32_word({s:#010x}, {w:#010x})", crc32_word(s, w), _bit_serial(s, w))


def test_inverse_matrix_and_key() -> None:
    rows, inv = crc32_matrix(), crc32_inverse_matrix()

    def apply(m, x):
        return sum(((r & x).bit_count() & 1) << i for i, r in enumerate(m))

    for j in range(32):
        _check(f"M^-1 M e{j}", apply(inv, apply(rows, 1 << j)), 1 << j)
    rng = np.random.default_rng(_seed("key"))
    for s, w, other in rng.integers(0, 1 << 32, size=(2000, 3)):
        s, w, other = int(s), int(w), int(other)
        crc = crc32_word(s, w) ^ CRC32_INIT        # the CRC if w is the final word
        _check(f"state {s:#010x} ^ crc32_key({crc:#010x})", s ^ crc32_key(crc), w)
        if other != w:
            assert crc32_word(s, other) ^ CRC32_INIT != crc, (s, w, other)
            assert s ^ crc32_key(crc) != other


def test_amaranth_helpers_match_zlib() -> None:
    """``crc32_step`` chained over random word sequences gives zlib's CRC; ``crc32_key``
    gives the software key. Amaranth's simulator, combinational."""
    seed = _seed("amaranth")
    rng = np.random.default_rng(seed)
    m = Module()
    state, word, crc = Signal(32), Signal(32), Signal(32)
    step, key = Signal(32), Signal(32)
    m.d.comb += [step.eq(rtl_step(state, word)), key.eq(rtl_key(crc))]
    seqs = [[int(v) for v in rng.integers(0, 1 << 32, size=int(n))]
            for n in rng.integers(1, 40, size=30)]
    seqs.append([0] * 5 + [MASK32] * 5)
    crcs = [int(v) for v in rng.integers(0, 1 << 32, size=300)] + [0, MASK32]
    checked = {"words": 0, "keys": 0}

    async def bench(ctx):
        for seq in seqs:
            s = CRC32_INIT
            for w in seq:
                ctx.set(state, s)
                ctx.set(word, w)
                got = ctx.get(step)
                _check(f"seed {seed}: rtl crc32_step({s:#010x}, {w:#010x})", got,
                       crc32_word(s, w))
                s = got
                checked["words"] += 1
            _check(f"seed {seed}: rtl CRC of {len(seq)} words {seq[:3]}", s ^ CRC32_INIT,
                   _zlib(seq))
        for c in crcs:
            ctx.set(crc, c)
            _check(f"seed {seed}: rtl crc32_key({c:#010x})", ctx.get(key), crc32_key(c))
            checked["keys"] += 1

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    print(f"{checked['words']} word updates, {checked['keys']} keys checked")
    assert checked["words"] == sum(map(len, seqs)) and checked["keys"] == len(crcs)


def test_polynomial_is_primitive() -> None:
    """What ``docs/formats.md`` builds its detection claims on: the CRC-32 polynomial
    (``CRC32_POLY`` reflected) is irreducible and x has order 2^32 - 1 modulo it."""
    from doublesparse.sim.formats import CRC32_POLY

    g = 1 << 32 | int(f"{CRC32_POLY:032b}"[::-1], 2)
    assert g == 0x1_04C1_1DB7

    def mulmod(a: int, b: int) -> int:
        r = 0
        while b:
            if b & 1:
                r ^= a
            b >>= 1
            a <<= 1
            if a >> 32:
                a ^= g
        return r

    def x_pow(e: int) -> int:
        r, base = 1, 2
        while e:
            if e & 1:
                r = mulmod(r, base)
            base, e = mulmod(base, base), e >> 1
        return r

    def gcd(a: int, b: int) -> int:
        while b:
            while a and a.bit_length() >= b.bit_length():
                a ^= b << (a.bit_length() - b.bit_length())
            a, b = b, a
        return a

    def x_2k(k: int) -> int:      # x^(2^k) mod g
        r = 2
        for _ in range(k):
            r = mulmod(r, r)
        return r

    # irreducible (Rabin's test; 2 is the only prime dividing the degree 32):
    # x^(2^32) = x mod g and gcd(x^(2^16) - x, g) = 1
    assert x_2k(32) == 2 and gcd(g, x_2k(16) ^ 2) == 1
    n = (1 << 32) - 1                 # = 3 * 5 * 17 * 257 * 65537
    assert x_pow(n) == 1
    for p in (3, 5, 17, 257, 65537):
        assert x_pow(n // p) != 1, p
