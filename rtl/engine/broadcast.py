"""The broadcast: one entry stream to every PE's feeder, in lockstep.

An entry (an activation chunk, a weight address, ``last``) is taken from the address
pipeline in a cycle where every PE has room for one more pair (``room[p]``, the feeders'
credit registers, ANDed into the register ``push_ok``), and offered to every feeder in
that cycle (``o.waddr``, ``o.valid``: the feeders read their weight memories then). The
activation chunk and ``last`` follow in shared registers, ``BROADCAST_STAGES`` cycles
deep, so that they meet each feeder's weight chunk: the activation mask at stage T2 (for
the join), the lanes and ``last`` at stage T3 (into the PEs' pair queues). Nothing here
stalls once an entry is taken; a feeder's credit keeps its PE's pair queue from
overflowing.

Timing rules: ``i.ready`` (``push_ok``) is one register beside the address pipeline,
loaded from the P credit registers; the shared registers are replicated once per
``FANOUT`` PEs, so no register drives more than ``FANOUT`` pair queues.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..chunk import chunk_word_layout
from .layouts import entry_layout, wgt_addr_bits

__all__ = ["Broadcast", "BROADCAST_STAGES", "FANOUT", "tap_layout"]

# shared registers after the push: T1, T2, T3
BROADCAST_STAGES = 3
# PEs one copy of the shared registers serves
FANOUT = 8


def tap_layout(cfg: Config) -> data.StructLayout:
    """What a feeder sees of the broadcast, stage by stage: the push (``valid``,
    ``waddr``) at T0, the activation mask at T2, the chunk (``a``), ``last`` and ``valid``
    at T3."""
    return data.StructLayout({
        "valid": 1, "waddr": wgt_addr_bits(cfg),
        "mask2": cfg.scan_width,
        "valid3": 1, "a3": chunk_word_layout(cfg.scan_width), "last3": 1,
    })


class Broadcast(wiring.Component):
    """One entry stream to P feeders in lockstep.

    Parameters
    ----------
    cfg : Config

    Members
    -------
    i : In(stream.Signature(entry_layout(cfg)))
        ``ready`` is a register: every PE had room.
    room : In(1).array(P)
        The feeders' credit registers.
    o : Out(tap_layout(cfg)).array(P)
        Each feeder's view of the broadcast.
    busy : Out(1)
        An entry is in the shared registers.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "i": In(stream.Signature(entry_layout(cfg))),
            "room": In(1).array(cfg.pes),
            "o": Out(tap_layout(cfg)).array(cfg.pes),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        P = cfg.pes
        word = chunk_word_layout(cfg.scan_width)
        push_ok = Signal()
        m.d.sync += push_ok.eq(Cat(*self.room).all())
        push = self.i.valid & push_ok
        m.d.comb += self.i.ready.eq(push_ok)
        busy = []
        for g in range(-(-P // FANOUT)):
            v1, v2, v3 = (Signal(name=f"g{g}_v{i}") for i in (1, 2, 3))
            l1, l2, l3 = (Signal(name=f"g{g}_l{i}") for i in (1, 2, 3))
            a1, a2, a3 = (Signal(word, name=f"g{g}_a{i}") for i in (1, 2, 3))
            m.d.sync += [v1.eq(push), a1.eq(self.i.payload.a), l1.eq(self.i.payload.last),
                         v2.eq(v1), a2.eq(a1), l2.eq(l1),
                         v3.eq(v2), a3.eq(a2), l3.eq(l2)]
            busy += [v1, v2, v3]
            for p in range(g * FANOUT, min(P, (g + 1) * FANOUT)):
                o = self.o[p]
                m.d.comb += [o.valid.eq(push), o.waddr.eq(self.i.payload.waddr),
                             o.mask2.eq(a2.mask), o.valid3.eq(v3), o.a3.eq(a3),
                             o.last3.eq(l3)]
        m.d.comb += self.busy.eq(Cat(*busy).any())
        return m
