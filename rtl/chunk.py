"""The chunk: the engine's internal form of J channels, defined once.

A chunk holds a J-bit ``mask`` (bit i: channel i is nonzero) and J signed bytes
``values``: in a *packed* chunk (the formats, the decoder, the dot-product PE) the nonzeros
packed from lane 0 in channel order, unused lanes zero; in a *lane* chunk (the convolution
engine's activation memory, :func:`pack_lanes`) channel i's value in lane i, zero where
the channel is zero. As a
stream payload (:func:`chunk_layout`) it also carries ``last`` (the final chunk of a
channel vector, which ends an accumulation) and ``end`` (the final chunk of a correctly
decoded image). In memory (:func:`chunk_word_layout`) a chunk is the first two fields
only: ``9 J`` bits, mask in the low bits, lane i at bit ``J + 8 i``; the host writes it as
:func:`host_words` 32-bit words, least significant first.

:func:`pack_chunk` and :func:`unpack_chunk` are the Python side of the same layouts (bit
offsets read from the Amaranth layouts, not written out again), used by the host-side
memory images, the testbenches and the docs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from amaranth import signed
from amaranth.lib import data

__all__ = ["chunk_layout", "chunk_word_layout", "chunk_bits", "host_words", "pack_chunk",
           "unpack_chunk", "split_words", "pack_lanes", "unpack_lanes", "words_of"]


@functools.cache
def chunk_word_layout(join_width: int) -> data.StructLayout:
    """A chunk as stored in the activation and weight memories: ``mask``, ``values``."""
    return data.StructLayout({
        "mask": join_width,
        "values": data.ArrayLayout(signed(8), join_width),
    })


@functools.cache
def chunk_layout(join_width: int) -> data.StructLayout:
    """A chunk as a stream payload: the memory word, then ``last`` and ``end``."""
    word = chunk_word_layout(join_width)
    return data.StructLayout({
        "mask": word["mask"].shape,
        "values": word["values"].shape,
        "last": 1,
        "end": 1,
    })


def chunk_bits(join_width: int) -> int:
    """Bits of a chunk in memory (``9 J``)."""
    return chunk_word_layout(join_width).size


def host_words(join_width: int) -> int:
    """32-bit host words per chunk (``ceil(9 J / 32)``)."""
    return -(-chunk_bits(join_width) // 32)


def pack_chunk(mask: int, values: Sequence[int], join_width: int, *, last: bool = False,
               end: bool = False) -> int:
    """The integer of a chunk payload (:func:`chunk_layout`); with ``last`` and ``end``
    clear it is also the memory word (:func:`chunk_word_layout`). ``values`` are the packed
    nonzeros (or every lane's value), at most J of them, each -128..127."""
    lay = chunk_layout(join_width)
    if len(values) > join_width:
        raise ValueError(f"{len(values)} values do not fit a {join_width}-lane chunk")
    if not 0 <= mask < 1 << join_width:
        raise ValueError(f"mask {mask:#x} does not fit {join_width} bits")
    base = lay["values"].offset
    word = mask << lay["mask"].offset
    for lane, v in enumerate(values):
        if not -128 <= int(v) <= 127:
            raise ValueError(f"value {v} in lane {lane} is not int8")
        word |= (int(v) & 0xFF) << (base + 8 * lane)
    return word | int(last) << lay["last"].offset | int(end) << lay["end"].offset


def unpack_chunk(word: int, join_width: int) -> tuple[int, list[int], bool, bool]:
    """(mask, the J lane values as signed ints, last, end) of a chunk payload or word."""
    lay = chunk_layout(join_width)
    mask = (word >> lay["mask"].offset) & ((1 << join_width) - 1)
    base = lay["values"].offset
    lanes = [(word >> (base + 8 * i)) & 0xFF for i in range(join_width)]
    lanes = [v - 256 if v >= 128 else v for v in lanes]
    return (mask, lanes, bool(word >> lay["last"].offset & 1),
            bool(word >> lay["end"].offset & 1))


def split_words(word: int, join_width: int) -> list[int]:
    """A chunk's memory word as the host's 32-bit words, least significant first."""
    return [(word >> (32 * i)) & 0xFFFFFFFF for i in range(host_words(join_width))]


def pack_lanes(values: Sequence[int], join_width: int) -> int:
    """The memory word of a lane chunk: channel i's value in lane i, the mask bit set
    where it is nonzero. ``values`` holds at most J channels (the rest are zero)."""
    if len(values) > join_width:
        raise ValueError(f"{len(values)} channels do not fit a {join_width}-lane chunk")
    mask = sum(1 << i for i, v in enumerate(values) if int(v) != 0)
    return pack_chunk(mask, values, join_width)


def unpack_lanes(word: int, join_width: int) -> list[int]:
    """The J channel values of a lane chunk's memory word (checked against its mask)."""
    mask, lanes, _, _ = unpack_chunk(word, join_width)
    for i, v in enumerate(lanes):
        if bool(mask >> i & 1) != (v != 0):
            raise ValueError(f"lane chunk: lane {i} holds {v} but its mask bit is "
                             f"{mask >> i & 1}")
    return lanes


def words_of(value: int, bits: int) -> list[int]:
    """A ``bits``-bit memory word as the host's 32-bit words, least significant first."""
    return [(value >> (32 * i)) & 0xFFFFFFFF for i in range(-(-bits // 32))]
