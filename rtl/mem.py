"""A memory in banks with a registered read, for wide and deep on-chip memories.

A deep memory mapped to block RAMs needs a multiplexer after them that picks the block
holding the word; with the block RAM's slow clock-to-output (5.8 ns on an ECP5 DP16KD
without its output register) and the routing from blocks spread across the chip, that
multiplexer does not fit a 10 ns cycle. ``BankedMemory`` splits the memory into banks of
``bank_depth`` words (each bank a whole number of block RAMs, no depth multiplexer
inside), registers every bank's read data ``stages`` times and selects the bank after
the last of those registers::

    r.addr, r.en ─► bank 0 ─► [n0] ─► [q0] ─┐
                    bank 1 ─► [n1] ─► [q1] ─┼─► select (registered bank number) ─► r.data
                    ...                     ┘

With ``stages=1`` there is only the bank register ``q{b}``, which must both catch the
block RAM's late output and drive the route to the select; since the select gathers all
banks, some bank registers end up far from their block RAMs and the block RAM -> ``q{b}``
arc (about 4 ns after the 5.8 ns clock-to-out) does not fit. With ``stages=2`` (the
engine's choice) the near register ``n{b}`` drives only ``q{b}``, so the long route lies
in the ``n{b}`` -> ``q{b}`` arc, a whole cycle between flip-flops.

Read timing: every cycle with ``r.en`` is a step: the address is taken into the block
RAM's own read register and every register stage moves on by one (all hold while
``r.en`` is low). ``r.data`` shows a word after the ``stages``-th step that follows its
address step (a pipeline ``stages + 1`` steps deep). A read in the cycle its address is
written returns an undefined word in hardware (``read_port_no_rw``; simulation returns the
old word): the user must not use it.

:class:`RAM` is one memory with the same registered write port and a synchronous read
port (one register: the block RAM's own), for the small memories.

Ports are interfaces: :func:`WritePortSignature` and :func:`ReadPortSignature` are seen
from the user of the memory (``Out``); the memories take them flipped (``In``), so that
``wiring.connect(m, user.port, memory.w)`` wires a user to a memory.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["BankedMemory", "LaneMemory", "RAM", "ReadPortSignature", "WritePortSignature",
           "read_port_no_rw", "write_port_reg"]


def WritePortSignature(addr_width: int, shape) -> wiring.Signature:
    """A write port as its user drives it: ``addr``, ``data``, ``en``."""
    return wiring.Signature({"addr": Out(addr_width), "data": Out(shape), "en": Out(1)})


def ReadPortSignature(addr_width: int, shape) -> wiring.Signature:
    """A read port as its user sees it: ``addr`` and ``en`` out, ``data`` in."""
    return wiring.Signature({"addr": Out(addr_width), "en": Out(1), "data": In(shape)})


def addr_bits(depth: int) -> int:
    return max(1, (depth - 1).bit_length())

def write_port_reg(m: Module, mem: Memory, name: str) -> SimpleNamespace:
    """A write port of ``mem`` with members ``addr``, ``data`` and ``en`` registered on their
    way: a word is stored a cycle after its ``en``. Yosys may put a block RAM's write and
    read on one shared port, the write enable then selecting the port's address; fed from
    flip-flops, that is one LUT (Fmax)."""
    wp = mem.write_port()
    port = SimpleNamespace(addr=Signal(len(wp.addr), name=f"{name}_wa"),
                           data=Signal(len(wp.data), name=f"{name}_wd"),
                           en=Signal(name=f"{name}_we"))
    ra = Signal(len(wp.addr), name=f"{name}_wa_r")
    rd = Signal(len(wp.data), name=f"{name}_wd_r", reset_less=True)
    re = Signal(name=f"{name}_we_r")
    m.d.sync += [ra.eq(port.addr), rd.eq(port.data), re.eq(port.en)]
    m.d.comb += [wp.addr.eq(ra), wp.data.eq(rd), wp.en.eq(re)]
    return port


def read_port_no_rw(m: Module, mem: Memory, name: str) -> SimpleNamespace:
    """A synchronous read port of ``mem`` with members ``addr``, ``en`` and ``data``, timed
    as ``mem.read_port(domain="sync")``, for a memory whose reads never use a word read in
    the cycle it is written: a collision returns an undefined word in hardware (the old
    word in simulation).

    Left to keep the read-old-data behaviour on a collision, Yosys builds a bypass in the
    fabric (write data and address registered, compared with the read address, a
    multiplexer after the block RAM's output): on the ECP5 that multiplexer sat on the
    critical path (block RAM clock-to-out 5.8 ns, then routing, then the LUT). The
    ``no_rw_check`` attribute (set on ``mem`` here) removes it, but Yosys honours it only
    where it merges a flip-flop into an asynchronous read port (its ``memory_dff`` pass);
    a synchronous port straight from Amaranth keeps its exact collision behaviour. So the
    port is written as an asynchronous read and a reset-less register with enable, which
    Yosys folds into the block RAM's read register.

    In the engine every memory is written either by the host while the engine is idle or
    by ENCODE, which does not read the memory it writes, so no read whose data is used
    meets a write to its address.
    """
    mem.attrs["no_rw_check"] = 1
    rp = mem.read_port(domain="comb")
    data = Signal(mem.shape, name=f"{name}_data", reset_less=True)
    en = Signal(name=f"{name}_en")
    with m.If(en):
        m.d.sync += data.eq(rp.data)
    return SimpleNamespace(addr=rp.addr, en=en, data=data)


class RAM(wiring.Component):
    """``depth`` words of ``shape``: one memory, registered write, synchronous read.

    Members
    -------
    w : In(WritePortSignature(addr_bits(depth), shape))
        A word is stored a cycle after its ``en``.
    r : In(ReadPortSignature(addr_bits(depth), shape))
        ``data`` shows the word at the ``addr`` of the last cycle with ``en`` (held while
        ``en`` is low). A read of a word in the cycle it is stored is undefined.
    """

    def __init__(self, shape, depth: int):
        if depth < 1:
            raise ValueError(f"depth = {depth}: must be >= 1")
        self.shape, self.depth = Shape.cast(shape), depth
        super().__init__({"w": In(WritePortSignature(addr_bits(depth), shape)),
                          "r": In(ReadPortSignature(addr_bits(depth), shape))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self.shape, depth=self.depth, init=[])
        wp = write_port_reg(m, mem, "w")
        rp = read_port_no_rw(m, mem, "r")
        m.d.comb += [wp.addr.eq(self.w.addr), wp.data.eq(self.w.data), wp.en.eq(self.w.en),
                     rp.addr.eq(self.r.addr), rp.en.eq(self.r.en), self.r.data.eq(rp.data)]
        return m


class BankedMemory(wiring.Component):
    """``depth`` words of ``width`` bits in banks of ``bank_depth`` words (a power of two).

    Members
    -------
    w : In(WritePortSignature(addr_bits(depth), width))
        One word a cycle; registered, so a word is stored a cycle after its ``en``.
    r : In(ReadPortSignature(addr_bits(depth), width))
        Every cycle with ``en`` is a read step (address taken, register stages moved on);
        ``data`` is the word whose address was taken ``stages`` steps before the last.
    """

    def __init__(self, width: int, depth: int, bank_depth: int = 1024, stages: int = 1):
        if bank_depth < 1 or bank_depth & (bank_depth - 1):
            raise ValueError(f"bank_depth = {bank_depth} is not a power of two")
        if stages not in (1, 2):
            raise ValueError(f"stages = {stages}: a bank has 1 or 2 register stages")
        if width < 1 or depth < 1:
            raise ValueError(f"width = {width}, depth = {depth}: both must be >= 1")
        self.width, self.depth, self.stages = width, depth, stages
        self.bank_bits = (min(bank_depth, depth) - 1).bit_length()
        self.banks = -(-depth // (1 << self.bank_bits))
        abits = addr_bits(depth)
        super().__init__({"w": In(WritePortSignature(abits, width)),
                          "r": In(ReadPortSignature(abits, width))})

    def elaborate(self, platform):
        m = Module()
        bb, nb = self.bank_bits, self.banks
        sel_bits = max(1, (nb - 1).bit_length())
        sel = [Signal(sel_bits, name=f"sel{i}") for i in range(self.stages + 1)]
        qs = []
        for b in range(nb):
            depth = min(1 << bb, self.depth - (b << bb))
            mem = Memory(shape=self.width, depth=depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = write_port_reg(m, mem, f"bank{b}")   # writes land a cycle later
            rp = read_port_no_rw(m, mem, f"bank{b}_rd")
            hit = (self.w.addr[bb:] == b) if nb > 1 else 1
            m.d.comb += [wp.addr.eq(self.w.addr[:bb]), wp.data.eq(self.w.data),
                         wp.en.eq(self.w.en & hit),
                         rp.addr.eq(self.r.addr[:bb]), rp.en.eq(self.r.en)]
            q = rp.data
            for name in ("n", "q")[2 - self.stages:]:
                r = Signal(self.width, name=f"{name}{b}", reset_less=True)
                with m.If(self.r.en):
                    m.d.sync += r.eq(q)
                q = r
            qs.append(q)
        if nb > 1:
            with m.If(self.r.en):
                m.d.sync += sel[0].eq(self.r.addr[bb:])
                m.d.sync += [sel[i + 1].eq(sel[i]) for i in range(self.stages)]
            # an AND-OR select written as one expression (a continuous assignment: Icarus
            # does not run an `always @*` block at time 0)
            out = 0
            for b in range(nb):
                out = out | Mux(sel[-1] == b, qs[b], 0)
            m.d.comb += self.r.data.eq(out)
        else:
            m.d.comb += self.r.data.eq(qs[0])
        return m


class LaneMemory(wiring.Component):
    """``depth`` words in ``lanes`` interleaved banks, one write port a lane.

    Word ``i`` lives in lane ``i mod lanes`` at local address ``i // lanes``; each lane is a
    :class:`BankedMemory` of ``depth / lanes`` words with its own write port (local
    addresses), so the lanes take a word each per cycle. The read port takes full
    addresses; its timing is the banked memories' (``stages`` register stages), and the
    lane is selected after them by a registered lane index, like the bank.

    Members
    -------
    w : In(WritePortSignature(addr_bits(depth / lanes), width)).array(lanes)
    r : In(ReadPortSignature(addr_bits(depth), width))
    """

    def __init__(self, width: int, depth: int, lanes: int, bank_depth: int = 1024,
                 stages: int = 2):
        if lanes < 1 or lanes & (lanes - 1) or depth % lanes:
            raise ValueError(f"lanes = {lanes}: a power of two dividing depth = {depth}")
        self.width, self.depth, self.lanes, self.stages = width, depth, lanes, stages
        self.bank_depth = bank_depth
        super().__init__({
            "w": In(WritePortSignature(addr_bits(depth // lanes), width)).array(lanes),
            "r": In(ReadPortSignature(addr_bits(depth), width)),
        })

    def elaborate(self, platform):
        m = Module()
        L, lb = self.lanes, (self.lanes - 1).bit_length()
        banks = []
        for ln in range(L):
            mem = BankedMemory(self.width, self.depth // L, self.bank_depth, self.stages)
            m.submodules[f"lane{ln}"] = mem
            banks.append(mem)
            wiring.connect(m, wiring.flipped(self.w[ln]), mem.w)
            m.d.comb += [mem.r.addr.eq(self.r.addr[lb:]), mem.r.en.eq(self.r.en)]
        if L == 1:
            m.d.comb += self.r.data.eq(banks[0].r.data)
            return m
        sel = [Signal(lb, name=f"lane_sel{i}") for i in range(self.stages + 1)]
        with m.If(self.r.en):
            m.d.sync += sel[0].eq(self.r.addr[:lb])
            m.d.sync += [sel[i + 1].eq(sel[i]) for i in range(self.stages)]
        out = 0
        for ln in range(L):
            out = out | Mux(sel[-1] == ln, banks[ln].r.data, 0)
        m.d.comb += self.r.data.eq(out)
        return m
