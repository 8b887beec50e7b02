"""The engine's control: job and ENCODE sequencing, status and the cycle counter.

States::

    IDLE ─start─► SETTLE (SETTLE_CYCLES) ─► CHECK ─ok─► RUN ─all results─► IDLE
      │                                       └─error─► IDLE (done, error code)
      └─encode─► ENCODE ─finished / overflow─► IDLE      (NOT_INT8 at once if MODE is raw)

SETTLE gives the descriptor check's registered arithmetic time to settle
(``CHECK_LATENCY``) and primes the sequencer's pixel walk in its last three cycles
(``load``, then ``prime`` twice). CHECK either refuses the job with the first error flag
(BAD_SHAPE, BAD_DESC, TOO_BIG, in that order) or pulses ``go``, which starts the
sequencer, the address pipeline, the collector and the requantizer and clears the PEs'
counters (``pe_clear``, registered: high the cycle after ``go``). RUN ends when the
sequencer has issued every step and ``total`` results have retired; the error is then
PE_FAULT if a PE flagged one. ``cycles`` counts the cycles of RUN.

Abort: ``abort`` (the host's CTRL abort, taken while busy) sends any state to IDLE with
``done`` and error ABORTED, and raises ``flush`` for one cycle (a register, so it drives
the datapath's synchronous reset from a flip-flop): the engine resets the sequencer, the
address pipeline, the broadcast, the feeders, the PEs, the collectors, the requantizers
and the re-encoder with it, and the next job starts from the same state as after reset
(memories and descriptor are kept).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .check import CHECK_LATENCY
from .regmap import EngineError

__all__ = ["Control", "SETTLE_CYCLES"]

SETTLE_CYCLES = 16
# the check has settled before the pixel walk is primed in SETTLE's last three cycles
assert SETTLE_CYCLES >= CHECK_LATENCY + 3


class Control(wiring.Component):
    """Members
    -------
    start, encode : In(1)
        Host commands (pulses, taken in IDLE only).
    raw : In(1)
        MODE bit 0: outputs are raw int32 (ENCODE refused).
    bad_shape, bad_desc, too_big : In(1)
        The descriptor check's flags.
    total : In(48)
        Results the job produces (taken at ``go``).
    seq_running, pe_fault, enc_overflow, enc_finished : In(1)
        The sequencer has steps left; a PE flagged an error; the re-encoder overflowed /
        is finished.
    retired : In(4)
        Results retired this cycle (one per output lane at most).
    busy, done : Out(1)
    error : Out(EngineError)
    cycles : Out(32)
    abort : In(1)
        The host's abort command (a pulse, only while busy).
    load, prime, go, pe_clear, enc_go : Out(1)
        Strobes to the datapath (see the module docstring).
    flush : Out(1)
        The cycle after an abort: reset the datapath (a register).
    """

    def __init__(self):
        super().__init__({
            "start": In(1), "encode": In(1), "raw": In(1),
            "bad_shape": In(1), "bad_desc": In(1), "too_big": In(1), "total": In(48),
            "seq_running": In(1), "retired": In(4), "pe_fault": In(1),
            "enc_overflow": In(1), "enc_finished": In(1), "abort": In(1),
            "busy": Out(1), "done": Out(1), "error": Out(EngineError), "cycles": Out(32),
            "load": Out(1), "prime": Out(1), "go": Out(1), "pe_clear": Out(1),
            "enc_go": Out(1), "flush": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        busy, done, error, cycles = self.busy, self.done, self.error, self.cycles
        results = Signal(32)
        total = Signal(32)
        settle = Signal(range(SETTLE_CYCLES))
        m.d.sync += results.eq(results + self.retired)
        m.d.sync += self.pe_clear.eq(0)

        def aborted():
            # last in a busy state, so it overrides what the state decided this cycle
            with m.If(self.abort):
                m.d.sync += [busy.eq(0), done.eq(1), error.eq(EngineError.ABORTED)]
                m.next = "IDLE"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [done.eq(0), error.eq(EngineError.OK), busy.eq(1),
                                 settle.eq(0)]
                    m.next = "SETTLE"
                with m.Elif(self.encode):
                    with m.If(self.raw):
                        m.d.sync += [done.eq(1), error.eq(EngineError.NOT_INT8)]
                    with m.Else():
                        m.d.sync += [done.eq(0), error.eq(EngineError.OK), busy.eq(1)]
                        m.d.comb += self.enc_go.eq(1)
                        m.next = "ENCODE"
            with m.State("SETTLE"):
                m.d.sync += settle.eq(settle + 1)
                m.d.comb += [self.load.eq(settle == SETTLE_CYCLES - 3),
                             self.prime.eq(settle >= SETTLE_CYCLES - 2)]
                with m.If(settle == SETTLE_CYCLES - 1):
                    m.next = "CHECK"
                aborted()
            with m.State("CHECK"):
                with m.If(self.bad_shape):
                    m.d.sync += [error.eq(EngineError.BAD_SHAPE), busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(self.bad_desc):
                    m.d.sync += [error.eq(EngineError.BAD_DESC), busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(self.too_big):
                    m.d.sync += [error.eq(EngineError.TOO_BIG), busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.go.eq(1)
                    m.d.sync += [self.pe_clear.eq(1), cycles.eq(0), results.eq(0),
                                 total.eq(self.total)]
                    m.next = "RUN"
                aborted()
            with m.State("RUN"):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If((results == total) & ~self.seq_running):
                    m.d.sync += [busy.eq(0), done.eq(1),
                                 error.eq(Mux(self.pe_fault, EngineError.PE_FAULT,
                                              EngineError.OK))]
                    m.next = "IDLE"
                aborted()
            with m.State("ENCODE"):
                with m.If(self.enc_overflow):
                    m.d.sync += [busy.eq(0), done.eq(1), error.eq(EngineError.TOO_BIG)]
                    m.next = "IDLE"
                with m.Elif(self.enc_finished):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                aborted()
        m.d.sync += self.flush.eq(self.abort & busy)
        return m
