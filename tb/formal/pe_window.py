"""The dot-product PE's window (``rtl/pe/window.py``): its select step ``step`` (always
valid) while the pipeline stalls (``step.ready`` low).

The strict stream rule (payload unchanged while not ready) does not hold, by design: the
step is the window's state read out each cycle, and a pair arriving from the join while
the pipeline stalls joins it at once (a step of one product from pair 0 grows to two when
pair 1 arrives). ``WindowStepStrict`` states the strict rule and fails; the pick loads a
step only when ``ready`` is high, so nothing is lost. What holds, and is proved here: while
the window holds a pair (``busy``) and the pipeline stalls, the step changes only in a
cycle after a pair arrived (``pair.valid``). A step of an empty window selects nothing
and closes nothing; its other fields are not meaningful (they settle in the first cycle).

The join's side is modelled as the PE drives it: a pair arrives exactly ``stages`` cycles
after a ``taken`` that the window's ``room`` allowed."""

from __future__ import annotations

from amaranth import Const, Module, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Cover

from ...rtl.pe.join import PE_STAGES
from ...rtl.pe.window import Window
from .common import Spec, as_bits
from .pe_mac import CFG

DEPTH = 2


class WindowStep(Spec):
    """``ignore_ready``: the window moves on while the pipeline stalls (a dropped step)."""

    mutations = ("ignore_ready",)
    strict = False

    def body(self, m: Module) -> None:
        m.submodules.dut = dut = Window(CFG, depth=DEPTH, stages=PE_STAGES, checks=True)
        take = AnySeq(1)
        m.d.comb += [Assume(~take | dut.room), dut.taken.eq(take)]
        line = Signal(PE_STAGES)                    # the join's stages
        m.d.sync += line.eq(line << 1 | take)
        m.d.comb += [dut.pair.valid.eq(line[PE_STAGES - 1]),
                     as_bits(dut.pair.payload).eq(AnySeq(len(as_bits(dut.pair.payload))))]
        ready = AnySeq(1)
        m.d.comb += dut.step.ready.eq(1 if self.mutation == "ignore_ready" else ready)
        stalled, arrived = Signal(), Signal()
        prev = Signal(len(as_bits(dut.step.payload)))
        m.d.sync += [stalled.eq(~ready & dut.busy), arrived.eq(dut.pair.valid),
                     prev.eq(as_bits(dut.step.payload))]
        with m.If(stalled & (Const(1) if self.strict else ~arrived)):
            m.d.comb += Assert(as_bits(dut.step.payload) == prev)
        m.d.comb += Cover(stalled & ready & dut.step.payload.sel.all()
                          & dut.step.payload.close)


class WindowStepStrict(WindowStep):
    """The strict stream rule on ``step``: fails (see the module's docstring)."""

    mutations = ()
    strict = True
