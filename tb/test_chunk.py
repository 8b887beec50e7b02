"""The chunk word (rtl/chunk.py) against the layout written out independently here (the
one place outside rtl/chunk.py that spells it: mask in bits 0..J-1, lane i at bit
J + 8 i, last at 9 J, end at 9 J + 1), lane chunks, and the host addresses of the
engine's chunk regions."""

from __future__ import annotations

import numpy as np
import pytest

from doublesparse.rtl.chunk import (
    host_words,
    pack_chunk,
    pack_lanes,
    split_words,
    unpack_chunk,
    unpack_lanes,
    words_of,
)
from doublesparse.rtl.engine.regmap import chunk_address, chunk_word_bits, entry_words
from doublesparse.sim.config import Config


def _reference(mask: int, vals: list[int], J: int, last: bool, end: bool) -> int:
    word = mask
    for i, v in enumerate(vals):
        word |= (v & 0xFF) << (J + 8 * i)
    return word | int(last) << (9 * J) | int(end) << (9 * J + 1)


@pytest.mark.parametrize("J", [8, 16, 24, 32, 64])
def test_chunk_words(J) -> None:
    rng = np.random.default_rng(J)
    for _ in range(50):
        mask = sum(1 << i for i in range(J) if rng.random() < 0.5)
        vals = [int(v) for v in rng.integers(-128, 128, int(rng.integers(0, J + 1)))]
        last, end = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        word = pack_chunk(mask, vals, J, last=last, end=end)
        assert word == _reference(mask, vals, J, last, end)
        assert unpack_chunk(word, J) == (mask, vals + [0] * (J - len(vals)), last, end)
        mem = word & ((1 << (9 * J)) - 1)
        parts = split_words(mem, J)
        assert len(parts) == host_words(J) == -(-9 * J // 32)
        assert sum(v << (32 * i) for i, v in enumerate(parts)) == mem
    with pytest.raises(ValueError, match="int8"):
        pack_chunk(1, [200], J)
    for _ in range(50):
        vals = [int(v) if rng.random() < 0.4 else 0 for v in rng.integers(-128, 128, J)]
        mask = sum(1 << i for i, v in enumerate(vals) if v)
        word = pack_lanes(vals, J)
        assert word == _reference(mask, vals, J, False, False)
        assert unpack_lanes(word, J) == vals
        assert words_of(word, 9 * J) == split_words(word, J)
    with pytest.raises(ValueError, match="lane"):
        unpack_lanes(_reference(0, [5], J, False, False), J)


@pytest.mark.parametrize("S", [16, 32, 64])
def test_chunk_addresses(S) -> None:
    cfg = Config(scan_width=S)
    wb = chunk_word_bits(cfg)
    n_act, n_wgt = entry_words("ACT", cfg), entry_words("WGT", cfg)
    assert n_act == host_words(S) == -(-9 * S // 32)
    assert n_wgt == -(-(S + (cfg.wval_mem_words - 1).bit_length()) // 32)
    assert 1 << wb >= max(n_act, n_wgt) and (wb == 3 or 1 << (wb - 1) < n_act)
    assert chunk_address("WGT", 5, n_wgt - 1, cfg, pe=2) == (18 << 24) | 5 << wb | (n_wgt - 1)
    assert chunk_address("ACT", 7, n_act - 1, cfg) == (1 << 24) | 7 << wb | (n_act - 1)
    with pytest.raises(ValueError, match="word"):
        chunk_address("ACT", 0, n_act, cfg)
    with pytest.raises(ValueError, match="word"):
        chunk_address("WGT", 0, n_wgt, cfg)
