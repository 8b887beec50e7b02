"""The engine's feeder (``rtl/engine/feeder.py``) and its credit, with the broadcast
(``rtl/engine/broadcast.py``) and the scan PE's pair queue (``rtl/spe/queue.py``) it
feeds.

The feeder's ``o`` does not look at ``ready``: its credit must guarantee that every pair
it offers finds room in the queue. Asserted: ``o.valid`` never meets a low ``i.ready`` of
the queue (so the stream rules hold trivially: valid never waits). The broadcast takes
entries from any upstream that keeps to the stream rules, the weight memory returns any
data (any mask, so any pair is kept or dropped), and the queue's consumer pops at will.

For k-induction the harness asserts the credit's invariant: the feeder's ``held`` equals
the pairs in the queue plus the entries in the broadcast's three stages and stays below
``PAIR_QUEUE``, its ``room`` is ``held + CREDIT_MARGIN < PAIR_QUEUE`` and the broadcast's
``push_ok`` is the last cycle's ``room``."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover

from ...rtl.engine.broadcast import Broadcast
from ...rtl.engine.feeder import CREDIT_MARGIN, Feeder
from ...rtl.spe.queue import PAIR_QUEUE, PairQueue
from .common import Opened, Spec, as_bits, drive_stream_in
from .engine_stream import CFG


class FeederCredit(Spec):
    """``late_room``: the broadcast sees the feeder's credit two cycles late (its ``room``
    through two more registers: the margin of two pushes no longer covers them)."""

    mutations = ("late_room",)

    def body(self, m: Module) -> None:
        bc, fd, q = Broadcast(CFG), Feeder(CFG), PairQueue(CFG, checks=True)
        obc, ofd, oq = Opened(bc), Opened(fd), Opened(q)
        m.submodules.broadcast, m.submodules.feeder, m.submodules.queue = obc, ofd, oq
        drive_stream_in(m, bc.i)
        if self.mutation == "late_room":
            late = [Signal(name=f"room_late{i}", init=1) for i in range(2)]
            m.d.sync += [late[0].eq(fd.room), late[1].eq(late[0])]
            m.d.comb += bc.room[0].eq(late[1])
        else:
            m.d.comb += bc.room[0].eq(fd.room)
        m.d.comb += [fd.i.eq(bc.o[0]),
                     as_bits(fd.wgt_rd.data).eq(AnySeq(len(as_bits(fd.wgt_rd.data)))),
                     q.i.valid.eq(fd.o.valid), q.i.payload.eq(fd.o.payload)]
        pop = AnySeq(1)
        m.d.comb += [Assume(~pop | q.head_valid), q.pop.eq(pop), fd.pe_pop.eq(pop)]
        m.d.comb += Assert(~fd.o.valid | q.i.ready)
        if self.mutation is None:
            held = ofd.signal("held")
            flight = sum(obc.signal(f"g0_v{i}") for i in (1, 2, 3))
            room_was = Signal()
            m.d.sync += room_was.eq(fd.room)
            m.d.comb += [Assert(held == oq.signal("count") + flight),
                         Assert(held < PAIR_QUEUE),
                         Assert(fd.room == (held + CREDIT_MARGIN < PAIR_QUEUE)),
                         Assert(obc.signal("push_ok") == room_was)]
        m.d.comb += Cover(fd.o.valid & (oq.signal("count") == PAIR_QUEUE - 2))
