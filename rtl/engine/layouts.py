"""Widths and stream payloads shared by the engine's components, defined once."""

from __future__ import annotations

from amaranth import signed
from amaranth.lib import data

from ...sim.config import Config
from ..chunk import chunk_word_layout

__all__ = ["fmax_slots", "act_addr_bits", "wgt_addr_bits", "out_addr_bits", "kmap_bits",
           "STEP_LAYOUT", "entry_layout", "collected_layout"]


def fmax_slots(cfg: Config) -> int:
    """Filter slots per PE in the KMAP region: ``ceil(max_filters / P)``."""
    return -(-cfg.max_filters // cfg.pes)


def act_addr_bits(cfg: Config) -> int:
    return (cfg.act_mem_chunks - 1).bit_length()


def wgt_addr_bits(cfg: Config) -> int:
    return max(1, (cfg.wgt_mem_chunks - 1).bit_length())


def out_addr_bits(cfg: Config) -> int:
    return (cfg.out_mem_words - 1).bit_length()


def kmap_bits(cfg: Config) -> int:
    """Bits of a KMAP entry: a filter index, or a value >= K for an empty slot."""
    return cfg.max_filters.bit_length() + 1


# one sequencer step: the input pixel (iy, ix) of a tap, chunk c, filter slot j, tap (r, s)
STEP_LAYOUT = data.StructLayout({"iy": 16, "ix": 16, "c": 16, "j": 16, "r": 4, "s": 4,
                                 "last": 1})


def entry_layout(cfg: Config) -> data.StructLayout:
    """A broadcast entry: the activation chunk, the address of the matching weight chunk,
    and ``last`` (the step ends an accumulation)."""
    return data.StructLayout({"a": chunk_word_layout(cfg.join_width),
                              "waddr": wgt_addr_bits(cfg), "last": 1})


def collected_layout(cfg: Config) -> data.StructLayout:
    """A collected result: the accumulator, its PE's filter slot (KMAP address
    ``p * fmax_slots + j``) and its output pixel."""
    return data.StructLayout({"acc": signed(cfg.acc_width),
                              "slot": range(cfg.pes * fmax_slots(cfg)),
                              "pix": out_addr_bits(cfg)})
