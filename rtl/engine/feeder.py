"""The feeder of one PE: its queue's entries in, weight and activation chunk streams out.

For each entry the feeder reads the PE's weight memory at the entry's weight address and
presents the weight chunk and the entry's activation chunk together, both with the entry's
``last``.

Timing rules: the weight block RAM's output (read the cycle before, with the activation
chunk and ``last`` registered beside it) is written straight into one of three registers
of a circular buffer, which the PE reads: no logic sits between the block RAM's output
(5.8 ns clock-to-out on the ECP5) and a flip-flop. An entry is taken (and the block RAM
read) while ``room``, a flip-flop, says the buffer will hold at most two entries counting
the one on the RAM's output, so the read enable is two flip-flops ANDed and does not wait
for the PE's ``ready``. Three registers let a PE that takes a pair every cycle get one
every cycle.
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..chunk import chunk_bits, chunk_layout, chunk_word_layout
from ..mem import ReadPortSignature
from .layouts import entry_layout, wgt_addr_bits

__all__ = ["Feeder", "FEEDER_ENTRIES", "FEEDER_STAGES"]

# entries the buffer holds
FEEDER_ENTRIES = 3
# registers from the queue head to the PE's input: the block RAM read, the buffer
FEEDER_STAGES = 2


class Feeder(wiring.Component):
    """Queue entries to a PE's chunk pairs.

    Parameters
    ----------
    cfg : Config

    Members
    -------
    i : In(stream.Signature(entry_layout(cfg)))
        Queue head; ``ready`` is a flip-flop.
    wgt_rd : Out(ReadPortSignature(wgt_addr_bits(cfg), 9 J))
        The PE's weight memory (synchronous read).
    w, a : Out(stream.Signature(chunk_layout(J)))
        Weight and activation chunks; ``valid`` together, and a pair is taken when both
        are ready (the PE takes them together).
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        J = cfg.join_width
        super().__init__({
            "i": In(stream.Signature(entry_layout(cfg))),
            "wgt_rd": Out(ReadPortSignature(wgt_addr_bits(cfg), chunk_bits(J))),
            "w": Out(stream.Signature(chunk_layout(J))),
            "a": Out(stream.Signature(chunk_layout(J))),
        })

    def elaborate(self, platform):
        m = Module()
        J, NB = self.cfg.join_width, FEEDER_ENTRIES
        word = chunk_word_layout(J)
        bv = Signal()                      # a weight chunk is on the RAM's output
        b_a = Signal(word)
        b_last = Signal()
        e_w = [Signal(word.size, name=f"e_w{i}") for i in range(NB)]
        e_a = [Signal(word.size, name=f"e_a{i}") for i in range(NB)]
        e_last = [Signal(name=f"e_last{i}") for i in range(NB)]
        wp = Signal(range(NB))
        rp = Signal(range(NB))
        held = Signal(range(NB + 1))
        nonempty = Signal()                # held != 0
        room = Signal(init=1)
        takes = nonempty & self.w.ready & self.a.ready
        load = self.i.valid & room
        held_n = Signal(range(NB + 1))
        m.d.comb += held_n.eq(held + bv - takes)
        m.d.sync += [bv.eq(load), held.eq(held_n), nonempty.eq(held_n != 0),
                     room.eq(held_n + load <= NB - 1)]
        m.d.comb += [self.i.ready.eq(room), self.wgt_rd.addr.eq(self.i.payload.waddr),
                     self.wgt_rd.en.eq(load)]
        with m.If(load):
            m.d.sync += [b_a.eq(self.i.payload.a), b_last.eq(self.i.payload.last)]
        with m.If(bv):
            for i in range(NB):
                with m.If(wp == i):
                    m.d.sync += [e_w[i].eq(self.wgt_rd.data), e_a[i].eq(b_a),
                                 e_last[i].eq(b_last)]
            m.d.sync += wp.eq(Mux(wp == NB - 1, 0, wp + 1))
        with m.If(takes):
            m.d.sync += rp.eq(Mux(rp == NB - 1, 0, rp + 1))
        w_word = data.View(word, Array(e_w)[rp])
        a_word = data.View(word, Array(e_a)[rp])
        last = Array(e_last)[rp]
        m.d.comb += [
            self.w.valid.eq(nonempty), self.a.valid.eq(nonempty),
            self.w.payload.mask.eq(w_word.mask), self.w.payload.values.eq(w_word.values),
            self.w.payload.last.eq(last),
            self.a.payload.mask.eq(a_word.mask), self.a.payload.values.eq(a_word.values),
            self.a.payload.last.eq(last),
        ]
        return m
