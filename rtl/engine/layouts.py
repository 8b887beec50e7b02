"""Widths and stream payloads shared by the engine's components, defined once."""

from __future__ import annotations

from amaranth import signed
from amaranth.lib import data

from ...sim.config import Config
from ..chunk import chunk_word_layout
from ..spe import wval_addr_bits

__all__ = ["fmax_slots", "act_addr_bits", "wgt_addr_bits", "out_addr_bits", "kmap_bits",
           "STEP_LAYOUT", "entry_layout", "collected_layout", "wgt_entry_layout",
           "pack_wgt_entry", "lane_bits", "lane_addr_bits", "lane_pes"]


def fmax_slots(cfg: Config) -> int:
    """Filter slots per PE in the KMAP region: ``ceil(max_filters / P)``."""
    return -(-cfg.max_filters // cfg.pes)


def act_addr_bits(cfg: Config) -> int:
    return (cfg.act_mem_chunks - 1).bit_length()


def wgt_addr_bits(cfg: Config) -> int:
    return max(1, (cfg.wgt_mem_chunks - 1).bit_length())


def out_addr_bits(cfg: Config) -> int:
    return (cfg.out_mem_words - 1).bit_length()


def lane_bits(cfg: Config) -> int:
    """Bits of an output lane's index (``log2 out_lanes``)."""
    return (cfg.out_lanes - 1).bit_length()


def lane_addr_bits(cfg: Config) -> int:
    """Address bits of one output lane's bank (``out_mem_words / out_lanes`` words)."""
    return max(1, (cfg.out_mem_words // cfg.out_lanes - 1).bit_length())


def lane_pes(cfg: Config) -> int:
    """PEs a lane collects: PE p delivers to lane ``p // lane_pes``."""
    return cfg.pes // cfg.out_lanes


def kmap_bits(cfg: Config) -> int:
    """Bits of a KMAP entry: a filter index, or a value >= K for an empty slot."""
    return cfg.max_filters.bit_length() + 1


# one sequencer step: the input pixel (iy, ix) of a tap, chunk c, filter slot j, tap (r, s)
STEP_LAYOUT = data.StructLayout({"iy": 16, "ix": 16, "c": 16, "j": 16, "r": 4, "s": 4,
                                 "last": 1})


def entry_layout(cfg: Config) -> data.StructLayout:
    """A broadcast entry: the activation chunk (a lane chunk of ``scan_width`` channels,
    ``rtl/chunk.py``), the address of the matching weight chunk, and ``last`` (the step
    ends an accumulation)."""
    return data.StructLayout({"a": chunk_word_layout(cfg.scan_width),
                              "waddr": wgt_addr_bits(cfg), "last": 1})


def wgt_entry_layout(cfg: Config) -> data.StructLayout:
    """A weight chunk in a PE's weight memory: its ``scan_width``-bit ``mask`` and the
    ``base`` address of its first nonzero in the PE's weight-value memory (its nonzeros
    follow in channel order)."""
    return data.StructLayout({"mask": cfg.scan_width, "base": wval_addr_bits(cfg)})


def pack_wgt_entry(mask: int, base: int, cfg: Config) -> int:
    """The integer of a weight-memory word (:func:`wgt_entry_layout`)."""
    lay = wgt_entry_layout(cfg)
    if not 0 <= mask < 1 << cfg.scan_width:
        raise ValueError(f"weight mask {mask:#x} does not fit {cfg.scan_width} bits")
    if not 0 <= base < cfg.wval_mem_words:
        raise ValueError(f"weight base {base} is outside the {cfg.wval_mem_words}-word "
                         f"weight-value memory")
    return mask << lay["mask"].offset | base << lay["base"].offset


def collected_layout(cfg: Config) -> data.StructLayout:
    """A collected result: the accumulator, its PE's filter slot (KMAP address
    ``p * fmax_slots + j``) and its output pixel."""
    return data.StructLayout({"acc": signed(cfg.acc_width),
                              "slot": range(cfg.pes * fmax_slots(cfg)),
                              "pix": lane_addr_bits(cfg)})
