"""Layouts and widths shared by the decoder's components."""

from __future__ import annotations

import functools

from amaranth.lib import data

from ...sim.config import Config
from ..chunk import chunk_word_layout

__all__ = ["WORD_LAYOUT", "partial_layout", "channel_width", "position_width"]

#: One image word on the decoder's input stream; ``last`` marks an image's final word.
WORD_LAYOUT = data.StructLayout({"data": 32, "last": 1})


@functools.cache
def partial_layout(join_width: int) -> data.StructLayout:
    """A chunk being assembled: the chunk's ``mask`` and ``values``
    (:func:`~doublesparse.rtl.chunk.chunk_word_layout`) and ``count``, the lanes filled
    so far (the next value goes to lane ``count``)."""
    word = chunk_word_layout(join_width)
    return data.StructLayout({
        "mask": word["mask"].shape,
        "values": word["values"].shape,
        "count": range(join_width + 1),
    })


def channel_width(cfg: Config) -> int:
    """Bits of a channel index or count: ``max_channels`` plus the furthest a run-length
    entry can reach past a chunk, with a bit to spare."""
    J, R = cfg.join_width, cfg.run_bits
    return (cfg.max_channels + 4 * J + 4 * (1 << R)).bit_length() + 1


def position_width(cfg: Config) -> int:
    """Bits of a position (channel vector) index or count."""
    return (cfg.max_positions + 1).bit_length()
