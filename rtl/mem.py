"""A memory in banks with a registered read, for wide and deep on-chip memories.

A deep memory mapped to block RAMs needs a multiplexer after them that picks the block
holding the word; with the block RAM's slow clock-to-output (5.8 ns on an ECP5 DP16KD
without its output register) and the routing from blocks spread across the chip, that
multiplexer does not fit a 10 ns cycle. ``BankedMemory`` splits the memory into banks of
``bank_depth`` words (each bank a whole number of block RAMs, no depth multiplexer
inside), registers every bank's read data ``stages`` times and selects the bank after
the last of those registers::

    r_addr, r_en ─► bank 0 ─► [n0] ─► [q0] ─┐
                    bank 1 ─► [n1] ─► [q1] ─┼─► select (registered bank number) ─► r_data
                    ...             (r_en2) ┘

With ``stages=1`` there is only the bank register ``q{b}``. It then has two jobs: catch
the block RAM's late output and drive the route to the select. The select gathers all
banks, so some bank registers must be far from their block RAMs. In ECP5 builds the
placer put the long route in the block RAM -> ``q{b}`` arc, which has only ~4 ns after
the 5.8 ns clock-to-out, and that arc failed 10 ns. With ``stages=2`` the near register
``n{b}`` drives only ``q{b}``, so the long route can go in the ``n{b}`` -> ``q{b}`` arc,
a whole cycle between flip-flops.

Read timing: the address is taken in a cycle with ``r_en`` (into the block RAM's own read
register, held while ``r_en`` is low); each cycle with ``r_en2`` moves every register
stage on by one. With the two tied, as the engine drives them, ``r_data`` shows a word
after the ``stages``-th step that follows its address step (a pipeline ``stages + 1``
steps deep). A read in the cycle its address is written returns an undefined word in
hardware (``read_port_no_rw``; simulation returns the old word): the user must not use
it.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["BankedMemory", "read_port_no_rw", "write_port_reg"]

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


class BankedMemory(wiring.Component):
    """``depth`` words of ``width`` bits in banks of ``bank_depth`` words (a power of two).

    Members
    -------
    w_addr, w_data, w_en : In
        Write port (one word a cycle; registered, so a word is stored a cycle after its
        ``w_en``).
    r_addr, r_en, r_en2 : In
        Read: address step (``r_en``) and bank-register step (``r_en2``, every stage).
    r_data : Out(width)
        The word read, one cycle after its last ``r_en2`` step.
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
        abits = max(1, (depth - 1).bit_length())
        super().__init__({
            "w_addr": In(abits), "w_data": In(width), "w_en": In(1),
            "r_addr": In(abits), "r_en": In(1), "r_en2": In(1),
            "r_data": Out(width),
        })

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
            hit = (self.w_addr[bb:] == b) if nb > 1 else 1
            m.d.comb += [wp.addr.eq(self.w_addr[:bb]), wp.data.eq(self.w_data),
                         wp.en.eq(self.w_en & hit),
                         rp.addr.eq(self.r_addr[:bb]), rp.en.eq(self.r_en)]
            q = rp.data
            for name in ("n", "q")[2 - self.stages:]:
                r = Signal(self.width, name=f"{name}{b}", reset_less=True)
                with m.If(self.r_en2):
                    m.d.sync += r.eq(q)
                q = r
            qs.append(q)
        if nb > 1:
            with m.If(self.r_en):
                m.d.sync += sel[0].eq(self.r_addr[bb:])
            with m.If(self.r_en2):
                m.d.sync += [sel[i + 1].eq(sel[i]) for i in range(self.stages)]
            # an AND-OR select written as one expression (a continuous assignment: Icarus
            # does not run an `always @*` block at time 0)
            out = 0
            for b in range(nb):
                out = out | Mux(sel[-1] == b, qs[b], 0)
            m.d.comb += self.r_data.eq(out)
        else:
            m.d.comb += self.r_data.eq(qs[0])
        return m
