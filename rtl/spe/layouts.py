"""Payloads of the scan PE (``rtl/spe/``), defined once."""

from __future__ import annotations

from amaranth import signed
from amaranth.lib import data

from ...sim.config import Config
from ..mem import addr_bits

__all__ = ["wval_addr_bits", "pair_layout", "result_layout", "op_layout", "ref_layout"]


def wval_addr_bits(cfg: Config) -> int:
    """Address bits of a PE's weight-value memory (``wval_mem_words`` deep)."""
    return addr_bits(cfg.wval_mem_words)


def pair_layout(cfg: Config) -> data.StructLayout:
    """A joined pair as the feeder hands it to the PE.

    ``lanes``: the activation chunk's values, lane i holding channel i (zero where the
    channel is zero); ``wmask``: the weight chunk's mask; ``base``: the weight-value memory
    address of the weight chunk's first nonzero (its nonzeros follow in channel order);
    ``andm``: ``wmask`` AND the activation mask (the matches); ``cnt``: the number of set
    bits of ``andm``; ``last``: the pair ends an accumulation."""
    S = cfg.scan_width
    return data.StructLayout({"lanes": data.ArrayLayout(signed(8), S), "wmask": S,
                              "base": wval_addr_bits(cfg), "andm": S, "cnt": range(S + 1),
                              "last": 1})


def result_layout(acc_width: int) -> data.StructLayout:
    """One accumulation's result."""
    return data.StructLayout({"value": signed(acc_width)})


def op_layout(cfg: Config) -> data.StructLayout:
    """One match as the extractor issues it (the fields of its pair, registered).

    ``below``: the channels below the match (a thermometer code; all ones for a pair with
    no match, which selects no lane); ``lanes``, ``wmask``, ``base``: the pair's; ``close``:
    the op ends an accumulation."""
    S = cfg.scan_width
    return data.StructLayout({"below": S, "lanes": data.ArrayLayout(signed(8), S),
                              "wmask": S, "base": wval_addr_bits(cfg), "close": 1})


def ref_layout(cfg: Config) -> data.StructLayout:
    """One match located: the weight-value memory address of its weight (``base`` + rank
    in the weight mask), its activation byte ``act`` and ``close``."""
    return data.StructLayout({"addr": wval_addr_bits(cfg), "act": signed(8), "close": 1})
