"""The chunk word (rtl/chunk.py) against the layout written out independently here (the
one place outside rtl/chunk.py that spells it: mask in bits 0..J-1, lane i at bit
J + 8 i, last at 9 J, end at 9 J + 1), and the host addresses of chunk words."""

from __future__ import annotations

import numpy as np
import pytest

from doublesparse.rtl.chunk import host_words, pack_chunk, split_words, unpack_chunk
from doublesparse.rtl.engine.regmap import chunk_address, chunk_word_bits


def _reference(mask: int, vals: list[int], J: int, last: bool, end: bool) -> int:
    word = mask
    for i, v in enumerate(vals):
        word |= (v & 0xFF) << (J + 8 * i)
    return word | int(last) << (9 * J) | int(end) << (9 * J + 1)


@pytest.mark.parametrize("J", [8, 16, 24, 32])
def test_chunk_words_and_addresses(J) -> None:
    rng = np.random.default_rng(J)
    for _ in range(50):
        mask = int(rng.integers(0, 1 << J))
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
    wb = chunk_word_bits(J)
    assert 1 << wb >= host_words(J)
    assert chunk_address("WGT", 5, host_words(J) - 1, J, pe=2) == \
        (18 << 24) | 5 << wb | (host_words(J) - 1)
    with pytest.raises(ValueError, match="word"):
        chunk_address("ACT", 0, host_words(J), J)
