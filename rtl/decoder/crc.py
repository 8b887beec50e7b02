"""CRC-32 of image words in logic: the GF(2) matrices of ``sim/formats.py`` as XOR trees.

The reflected CRC-32 (``zlib.crc32``) advances by a whole 32-bit word as a linear map of
``state ^ word``: :func:`~doublesparse.sim.formats.crc32_matrix` generates it by running the
32 one-bit register steps symbolically, and :func:`crc32_step` emits one XOR expression per
register bit from it (12 to 17 terms of ``state ^ word`` each: a few LUT levels, no carry
chain). Software (:func:`~doublesparse.sim.formats.crc32_word`) and logic use the same
matrix, so they cannot drift apart.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

from amaranth import Cat, Const, Value

from ...sim.formats import CRC32_INIT, crc32_inverse_matrix, crc32_matrix

__all__ = ["gf2_apply", "crc32_step", "crc32_key"]


def gf2_apply(rows: Sequence[int], x: Value) -> Value:
    """``rows`` (bit masks, one per output bit) applied to the 32-bit value ``x`` over
    GF(2): output bit i is the XOR of the bits of ``x`` that ``rows[i]`` selects."""
    bits = []
    for row in rows:
        terms = [x[j] for j in range(32) if row >> j & 1]
        bits.append(functools.reduce(operator.xor, terms) if terms else Const(0, 1))
    return Cat(*bits)


def crc32_step(state: Value, word: Value) -> Value:
    """The CRC register after ``word``: start from ``CRC32_INIT``; after the last word the
    register XOR ``CRC32_INIT`` is the CRC (``zlib.crc32`` of the words' little-endian
    bytes)."""
    return gf2_apply(crc32_matrix(), state ^ word)


def crc32_key(crc: Value) -> Value:
    """The key that checks ``crc`` at the final word with one comparison:
    ``crc32_step(state, w) ^ CRC32_INIT == crc`` exactly when ``w == state ^ key``
    (:func:`~doublesparse.sim.formats.crc32_key`)."""
    return gf2_apply(crc32_inverse_matrix(), crc ^ CRC32_INIT)
