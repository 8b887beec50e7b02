"""Formal proof harnesses (``docs/verification.md``), one small file per block, and the
list of properties that ``doublesparse prove`` and ``tb/test_formal.py`` run."""

from __future__ import annotations

from dataclasses import dataclass

from .common import Spec

__all__ = ["Property", "PROPERTIES"]


@dataclass(frozen=True)
class Property:
    """One property: ``harness(mutation)`` builds the harness, ``mode`` is ``prove``
    (k-induction of depth ``depth``) or ``bmc`` (``depth`` cycles from the initial state);
    ``cover_depth`` bounds the cover run and the runs of the mutations (bmc: a mutation
    must give a counterexample from the initial state); ``mutations`` name the deliberate
    faults that must make the property FAIL."""

    name: str
    block: str
    what: str
    harness: type[Spec]
    mode: str
    depth: int
    cover_depth: int

    @property
    def mutations(self) -> tuple[str, ...]:
        return self.harness.mutations


def _properties() -> list[Property]:
    from . import (
        decoder,
        engine_control,
        engine_feeder,
        engine_stream,
        pe_join,
        pe_mac,
        pe_pick,
        pe_select,
        pe_top,
        pe_window,
        spe_queue,
        spe_top,
    )

    rules = "obeys the stream rules (valid holds until ready, payload stable meanwhile)"
    return [
        # the stream rules, one property per producing component
        Property("stream.decoder", "rtl/decoder/decoder.py", f"o {rules}",
                 decoder.DecoderStream, "prove", 2, 16),
        Property("stream.pe", "rtl/pe/pe.py", f"o {rules}", pe_top.PEStream, "prove", 2, 14),
        Property("stream.pe.mac", "rtl/pe/mac.py", f"o {rules}", pe_mac.MACStream,
                 "prove", 2, 8),
        Property("stream.pe.pick", "rtl/pe/pick.py", "ops (always valid): payload stable "
                 "while not ready", pe_pick.PickStream, "prove", 2, 8),
        Property("stream.pe.window", "rtl/pe/window.py", "step (always valid): payload "
                 "stable while not ready unless a pair arrived", pe_window.WindowStep,
                 "bmc", 12, 12),
        Property("stream.spe", "rtl/spe/pe.py, rtl/spe/outbuf.py", f"o {rules}",
                 spe_top.SPEStream, "prove", 4, 16),
        Property("stream.engine.sequencer", "rtl/engine/sequencer.py", f"o {rules}",
                 engine_stream.SequencerStream, "prove", 2, 8),
        Property("stream.engine.address", "rtl/engine/address.py", f"o {rules}",
                 engine_stream.AddressStream, "prove", 2, 14),
        Property("credit.engine.feeder", "rtl/engine/feeder.py, broadcast.py, "
                 "rtl/spe/queue.py", "every pair the feeder offers finds room in the PE's "
                 "pair queue", engine_feeder.FeederCredit, "prove", 3, 24),
        # the engine's control after an abort
        Property("abort.engine.control", "rtl/engine/control.py", "an abort while busy "
                 "leaves the control idle with ABORTED the next cycle, and flush high in "
                 "exactly that cycle", engine_control.ControlAbort, "bmc", 24, 24),
        # the pair queue against its reference model
        Property("queue.spe.model", "rtl/spe/queue.py", "pairs leave in order, none lost "
                 "or duplicated; ready and head_valid as documented", spe_queue.QueueModel,
                 "prove", 1, 24),
        # the decoder: no deadlock, every image ends
        Property("decoder.accepts", "rtl/decoder/", "with o ready, every word offered is "
                 f"accepted within {decoder.ACCEPT_BOUND} cycles", decoder.DecoderAccepts,
                 "bmc", 20, 20),
        Property("decoder.ends", "rtl/decoder/", f"done within {decoder.END_BOUND} cycles "
                 "of an image's last word; an error code xor the end chunk",
                 decoder.DecoderEnds, "bmc", 20, 20),
        # the dot-product PE's result, block by block
        Property("dot.pe.join", "rtl/pe/join.py", "a chunk pair becomes its matched "
                 "operands in channel order, with their count", pe_join.JoinPair,
                 "bmc", 9, 9),
        Property("dot.pe.select", "rtl/pe/window.py, rtl/pe/pick.py", "the MAC takes every "
                 "entry of the pairs once, in order; closes after each accumulation's last",
                 pe_select.SelectOrder, "bmc", 12, 12),
        Property("dot.pe.mac", "rtl/pe/mac.py", "each result is the sum of the products of "
                 "the operands taken since the previous one", pe_mac.MACSum, "bmc", 8, 8),
    ]


PROPERTIES: list[Property] = _properties()
