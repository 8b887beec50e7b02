"""What the proof harnesses share: the harness top (clock domain, RTLIL), the stream rules
as assertions and as assumptions, and a way to read a component's internal signals.

A harness is an :class:`amaranth.Elaboratable` built by :class:`Spec`: ``body(m)``
instantiates the component, drives its inputs from ``AnySeq`` / ``AnyConst`` under
``Assume``, and asserts and covers. The clock is a port of the RTLIL (otherwise it is tied
to 0 and the flip-flops vanish); the domain has no reset, so every register starts at its
``init`` value and keeps running (a reset in the middle of a run is not explored).
"""

from __future__ import annotations

from collections.abc import Iterable

from amaranth import ClockDomain, Elaboratable, Module, Signal, Value
from amaranth.asserts import AnySeq
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Cover, Fragment
from amaranth.lib import data, wiring

__all__ = ["Spec", "Opened", "to_rtlil", "assert_stream_out", "assume_stream_in",
           "drive_stream_in", "as_bits"]


def as_bits(v) -> Value:
    """A value or a ``data.View`` as a plain value."""
    return v.as_value() if isinstance(v, data.View) else Value.cast(v)


class Spec(Elaboratable):
    """A harness top: a reset-less ``sync`` domain whose clock is the only port.

    Subclasses write :meth:`body`. ``mutation`` names a deliberate fault the harness
    inserts (``None``: the real design under its contract)."""

    mutations: tuple[str, ...] = ()

    def __init__(self, mutation: str | None = None):
        if mutation is not None and mutation not in self.mutations:
            raise ValueError(f"{type(self).__name__}: unknown mutation {mutation!r} "
                             f"(known: {', '.join(self.mutations) or 'none'})")
        self.mutation = mutation
        self.cd = ClockDomain("sync", reset_less=True)

    def body(self, m: Module) -> None:
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.cd
        self.body(m)
        return m


def to_rtlil(spec: Spec) -> str:
    """The harness as RTLIL, module ``top``, its clock a port."""
    return rtlil.convert(spec, name="top", ports=[spec.cd.clk], emit_src=False)


def _signals_of(stmts, out: dict) -> None:
    for stmt in stmts:
        for sig in list(stmt._lhs_signals()) + list(stmt._rhs_signals()):
            out.setdefault(sig.name, []).append(sig)


class Opened(Elaboratable):
    """A component elaborated by the harness, so that its internal signals (named as in
    its ``elaborate``) and its memories can be read for the invariants that make a proof
    inductive. Use it as the submodule in place of the component; drive the component's
    ports as usual.

    ``memory(name)`` gives a ``lib.memory.Memory`` submodule (call before
    :meth:`signal`, which elaborates the rest); ``signal(name, *path)`` finds a signal of
    the component (or of the submodule at ``path``) by name, ports excluded, and fails
    when the name is missing or ambiguous (the design changed: the harness must follow
    it)."""

    def __init__(self, component: Elaboratable):
        self.component = component
        component._MustUse__used = True          # elaborated here, not by Fragment.get
        self.module = component.elaborate(None)
        self._frag = None

    def memory(self, name: str):
        if self._frag is not None:
            raise RuntimeError("Opened.memory() after signal(): the memory is elaborated")
        return getattr(self.module.submodules, name)

    def _fragment(self) -> Fragment:
        if self._frag is None:
            self._frag = Fragment.get(self.module, None)
        return self._frag

    def signal(self, name: str, *path: str) -> Signal:
        frag = self._fragment()
        for sub in path:
            found = [f for f, n, *_ in frag.subfragments if n == sub]
            if len(found) != 1:
                raise LookupError(f"{type(self.component).__name__}: no submodule {sub!r}")
            frag = found[0]
        sigs: dict[str, list[Signal]] = {}
        for stmts in frag.statements.values():
            _signals_of(stmts, sigs)
        ports = set()
        if not path and isinstance(self.component, wiring.Component):
            for _, _, value in self.component.signature.flatten(self.component):
                ports.add(id(as_bits(value)))
        unique = {id(s): s for s in sigs.get(name, []) if id(s) not in ports}
        if len(unique) != 1:
            raise LookupError(f"{type(self.component).__name__}{''.join('.' + p for p in path)}"
                              f": {len(unique)} signals named {name!r}")
        return next(iter(unique.values()))

    def elaborate(self, platform):
        return self._fragment()


def assume_stream_in(m: Module, s, *, always_valid: bool = False) -> None:
    """The upstream side of the stream rules for an input stream driven by the harness:
    once valid, ``valid`` and ``payload`` hold until ``ready`` (for an ``always_valid``
    stream: the payload holds while not ready)."""
    held = Signal(name="held_in")
    prev = Signal(len(as_bits(s.payload)), name="prev_in")
    stalled = ~s.ready if always_valid else s.valid & ~s.ready
    m.d.sync += [held.eq(stalled), prev.eq(as_bits(s.payload))]
    with m.If(held):
        if not always_valid:
            m.d.comb += Assume(s.valid)
        m.d.comb += Assume(as_bits(s.payload) == prev)


def drive_stream_in(m: Module, s, *, always_valid: bool = False,
                    payload: Value | None = None) -> None:
    """Drive an input stream from ``AnySeq`` under :func:`assume_stream_in`."""
    if not always_valid:
        m.d.comb += s.valid.eq(AnySeq(1))
    m.d.comb += as_bits(s.payload).eq(payload if payload is not None
                                      else AnySeq(len(as_bits(s.payload))))
    assume_stream_in(m, s, always_valid=always_valid)


def assert_stream_out(m: Module, valid: Value, ready: Value, payload,
                      *, cover_stall: Iterable[Value] = ()) -> Signal:
    """The producer side of the stream rules, asserted: after a cycle with ``valid`` and
    not ``ready``, ``valid`` is still high and ``payload`` unchanged. Covers a transfer
    that waited at least two cycles (and each of ``cover_stall`` true at that transfer).
    Returns the "stalled last cycle" register."""
    stalled = Signal(name="stalled_out")
    waited = Signal(2, name="waited_out")
    prev = Signal(len(as_bits(payload)), name="prev_out")
    m.d.sync += [stalled.eq(valid & ~ready), prev.eq(as_bits(payload))]
    with m.If(valid & ~ready):
        with m.If(waited != 3):
            m.d.sync += waited.eq(waited + 1)
    with m.Else():
        m.d.sync += waited.eq(0)
    with m.If(stalled):
        m.d.comb += [Assert(valid), Assert(as_bits(payload) == prev)]
    cond = valid & ready & (waited >= 2)
    for c in cover_stall:
        cond = cond & c
    m.d.comb += Cover(cond)
    return stalled
