"""ResultBuffer: the scan PE's result slots and their credit (``rtl/spe/``)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.hdl import Assert
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from .layouts import result_layout

__all__ = ["ResultBuffer", "OUT_SLOTS", "OUT_DELAY"]

# results the buffer holds (distributed RAM); at least the issue-to-result latency + 1,
# so that the credit never holds the extractor while ``o`` is ready
OUT_SLOTS = 16
# cycles from a result on ``res`` to it on ``o`` (buffer empty)
OUT_DELAY = 1


class ResultBuffer(wiring.Component):
    """``OUT_SLOTS`` results in a circular buffer, and the credit that keeps it from
    overflowing although the pipeline in front never stalls.

    ``pending`` counts the results promised: ops ending an accumulation issued by the
    extractor (``issued``) and not yet taken on ``o``. ``room`` is a register, high while
    ``pending < OUT_SLOTS``, loaded each cycle from comparisons of the present ``pending``
    chosen by ``issued`` and the take; so every result that arrives on ``res`` finds a free
    slot. ``o.valid`` is a register (the buffer is not empty); ``o.payload`` is the
    asynchronous read of the buffer at the registered head pointer.

    Parameters
    ----------
    cfg : Config
        ``acc_width``.
    checks : bool
        Add simulation assertions that ``room`` equals ``pending < OUT_SLOTS`` and that no
        result arrives at a full buffer.

    Members
    -------
    res : In(stream.Signature(result_layout(acc_width), always_ready=True))
        Results from the accumulator.
    issued : In(1)
        A result was promised this cycle (the extractor issued a closing op).
    room : Out(1)
        Another result may be promised (a register).
    o : Out(stream.Signature(result_layout(acc_width)))
        Results in order, ``OUT_DELAY`` cycle after ``res`` at the earliest.
    busy : Out(1)
        The buffer holds a result.
    """

    def __init__(self, cfg: Config, *, checks: bool = False):
        self.cfg, self.checks = cfg, checks
        super().__init__({
            "res": In(stream.Signature(result_layout(cfg.acc_width), always_ready=True)),
            "issued": In(1),
            "room": Out(1, init=1),
            "o": Out(stream.Signature(result_layout(cfg.acc_width))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        N = OUT_SLOTS
        m.submodules.mem = mem = Memory(shape=result_layout(self.cfg.acc_width), depth=N,
                                        init=[])
        wr, rd = mem.write_port(), mem.read_port(domain="comb")
        tail = Signal(range(N))
        head = Signal(range(N))
        count = Signal(range(N + 1))                 # results held
        pending = Signal(range(N + 1))               # results promised, not yet taken
        put = self.res.valid
        take = self.o.valid & self.o.ready
        iss = self.issued
        m.d.comb += [wr.addr.eq(tail), wr.data.eq(self.res.payload), wr.en.eq(put),
                     rd.addr.eq(head), self.o.payload.eq(rd.data), self.busy.eq(self.o.valid)]
        m.d.sync += [tail.eq(tail + put), head.eq(head + take),
                     count.eq(count + put - take), pending.eq(pending + iss - take)]
        m.d.sync += [
            self.o.valid.eq(Mux(put, 1, Mux(take, count > 1, count > 0))),
            self.room.eq(Mux(iss, Mux(take, pending < N, pending < N - 1),
                             take | (pending < N))),
        ]
        if self.checks:
            m.d.sync += [Assert(self.room == (pending < N),
                                "ResultBuffer room differs from pending < OUT_SLOTS"),
                         Assert(~put | (count < N), "ResultBuffer overflow"),
                         Assert(self.o.valid == (count > 0),
                                "ResultBuffer o.valid differs from count > 0")]
        return m
