"""The broadcast: one entry stream into P queues, one per PE.

An entry is pushed into every queue at once, in a cycle where all of them have room, so
every PE sees every step in order. The queues (``FeedQueue``, ``queue_depth`` deep) let a
PE with a denser filter fall behind the others by up to a queue of steps before it holds
the broadcast back.

Timing rule: ``i.ready`` (all queues have room) is one flip-flop beside the sender, loaded
from the queues' ``w_rdy_next``: equal to the AND of their ``w_rdy`` flip-flops, but the
route from the PEs ends at this register instead of running on into the sender's enables.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..fifo import FeedQueue
from .layouts import entry_layout

__all__ = ["Broadcast"]


class Broadcast(wiring.Component):
    """One stream to P first-word-fall-through queues.

    Parameters
    ----------
    cfg : Config
        ``pes`` (P) queues of ``queue_depth`` entries.

    Members
    -------
    i : In(stream.Signature(entry_layout(cfg)))
        ``ready`` is a flip-flop (all queues have room).
    o : Out(stream.Signature(entry_layout(cfg))).array(P)
        Queue heads, one stream per PE.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        sig = stream.Signature(entry_layout(cfg))
        super().__init__({"i": In(sig), "o": Out(sig).array(cfg.pes)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        width = entry_layout(cfg).size
        queues = []
        for p in range(cfg.pes):
            q = FeedQueue(width, cfg.queue_depth)
            m.submodules[f"queue{p}"] = q
            queues.append(q)
            m.d.comb += [self.o[p].valid.eq(q.r_rdy), self.o[p].payload.eq(q.r_data),
                         q.r_en.eq(self.o[p].ready)]
        push_ok = Signal(init=1)
        m.d.sync += push_ok.eq(Cat(*[q.w_rdy_next for q in queues]).all())
        m.d.comb += self.i.ready.eq(push_ok)
        for q in queues:
            m.d.comb += [q.w_en.eq(self.i.valid & push_ok), q.w_data.eq(self.i.payload)]
        return m
