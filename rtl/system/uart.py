"""UART: 8N1 transmitter and receiver on byte streams (``rtl/system/``).

A frame is one start bit (0), eight data bits least significant first and one stop bit (1),
each bit ``divisor`` clock cycles long; the line idles high. ``divisor_for`` turns a clock
frequency and a baud rate into a divisor.

Receiver sampling (``sample_offsets``): the receiver counts cycles from the first cycle its
synchronized line shows a falling edge (cycle 0 of the start bit) and samples every bit at
cycles ``mid - spread``, ``mid`` and ``mid + spread`` into it, with ``mid = (divisor - 1) //
2`` and ``spread = max(1, divisor // 8)``; the bit is the majority of the three. Cycle ``k``
after the detection sees the line ``k`` to ``k + 1`` cycles after the transmitter's edge, so
``mid`` is the middle of the bit (half a cycle early for an even divisor), and the three
samples are distinct cycles, so a one-cycle pulse changes at most one vote. Divisors 217
(25 MHz, 115 200 baud), 16, 5 and 4 sample at (81, 108, 135), (5, 7, 9), (1, 2, 3) and
(0, 1, 2).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTTx", "UARTRx", "divisor_for", "sample_offsets", "DEFAULT_BAUD",
           "MIN_DIVISOR", "MAX_BAUD_ERROR", "FRAME_BITS", "SYNC_STAGES", "RX_LATENCY",
           "TX_LATENCY", "COUNTER_BITS"]

# the board's line rate
DEFAULT_BAUD = 115_200
# the smallest divisor: three distinct sample cycles inside a bit
MIN_DIVISOR = 4
# the largest relative baud error divisor_for accepts
MAX_BAUD_ERROR = 0.02
DATA_BITS = 8
# start bit, data bits, stop bit
FRAME_BITS = DATA_BITS + 2
# flip-flops between the rx pin and the receiver's logic
SYNC_STAGES = 2
# cycles from the stop bit's last sample (cycle mid + spread of the stop bit) to o.valid
RX_LATENCY = 1
# cycles from a byte taken on i to the first cycle of its start bit on tx
TX_LATENCY = 1
# width of the receiver's saturating error counters
COUNTER_BITS = 16


def _check_divisor(divisor: int) -> int:
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor {divisor!r} must be an integer >= {MIN_DIVISOR} "
                         f"(clock cycles per bit)")
    return divisor


def divisor_for(clock_hz: int, baud: int = DEFAULT_BAUD) -> int:
    """The divisor (clock cycles per bit) nearest to ``clock_hz / baud``.

    Raises ``ValueError`` naming the clock and the baud rate when the divisor is below
    ``MIN_DIVISOR`` or the line rate it gives differs from ``baud`` by more than
    ``MAX_BAUD_ERROR``.
    """
    if clock_hz <= 0 or baud <= 0:
        raise ValueError(f"clock {clock_hz} Hz and baud {baud} must be positive")
    divisor = (2 * clock_hz + baud) // (2 * baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"clock {clock_hz} Hz is too slow for {baud} baud: divisor "
                         f"{divisor} < {MIN_DIVISOR}")
    error = abs(clock_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"clock {clock_hz} Hz cannot make {baud} baud: divisor {divisor} "
                         f"gives {clock_hz / divisor:.0f} baud, an error of {error:.1%} > "
                         f"{MAX_BAUD_ERROR:.0%}")
    return divisor


def sample_offsets(divisor: int) -> tuple[int, int, int]:
    """The receiver's three sample cycles within a bit, counted from its first cycle."""
    mid, spread = (_check_divisor(divisor) - 1) // 2, max(1, divisor // 8)
    return mid - spread, mid, mid + spread


class UARTTx(wiring.Component):
    """UART transmitter, 8N1.

    A byte taken on ``i`` starts its start bit ``TX_LATENCY`` cycle later. ``i.ready`` is
    high while the line is idle and in the last cycle of a stop bit (it depends on the
    state only), so bytes offered back to back go out with no gap: one byte every
    ``FRAME_BITS * divisor`` cycles.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (``divisor_for(clock_hz, baud)``), at least ``MIN_DIVISOR``.

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1, init=1)
        The line (a flip-flop); high while idle.
    busy : Out(1)
        A frame is on the line.
    """

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(divisor)
        super().__init__({
            "i": In(stream.Signature(DATA_BITS)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        left = Signal(range(FRAME_BITS + 1))        # bits of the frame on the line or to come
        cnt = Signal(range(d))                       # cycles of the current bit after this one
        shreg = Signal(FRAME_BITS - 1, init=(1 << FRAME_BITS - 1) - 1)  # data, stop; next at [0]
        bit_end = cnt == 0
        ready = (left == 0) | ((left == 1) & bit_end)
        m.d.comb += [self.i.ready.eq(ready), self.busy.eq(left != 0)]
        with m.If(self.i.valid & ready):
            m.d.sync += [self.tx.eq(0), shreg.eq(Cat(self.i.payload, Const(1, 1))),
                         left.eq(FRAME_BITS), cnt.eq(d - 1)]
        with m.Elif((left != 0) & bit_end):
            m.d.sync += [self.tx.eq(shreg[0]), shreg.eq(Cat(shreg[1:], Const(1, 1))),
                         left.eq(left - 1), cnt.eq(d - 1)]
        with m.Elif(left != 0):
            m.d.sync += cnt.eq(cnt - 1)
        return m


class UARTRx(wiring.Component):
    """UART receiver, 8N1, with a two flip-flop synchronizer and majority voting.

    While hunting, a falling edge of the synchronized line starts a frame. Each bit is the
    majority of three samples (``sample_offsets``). A start bit that votes 1 was a glitch
    (shorter than about half a bit): back to hunting. After the stop bit's last sample the
    receiver hunts again at once, so a transmitter a few per cent faster works back to back.
    A stop bit that votes 0 is a framing error: the byte is dropped and counted (a break,
    the line held low, counts one: the next frame needs a falling edge). A good
    byte shows on ``o`` ``RX_LATENCY`` cycle after the stop bit's last sample (``spread +
    RX_LATENCY`` after its middle sample); if ``o`` still holds the previous byte then
    (valid and not ready) the new one is dropped and counted as an overrun.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (``divisor_for(clock_hz, baud)``), at least ``MIN_DIVISOR``.

    Members
    -------
    rx : In(1, init=1)
        The line, asynchronous.
    o : Out(stream.Signature(8))
        Bytes received; ``valid`` and ``payload`` are flip-flops.
    framing_errors : Out(COUNTER_BITS)
        Bytes dropped for a stop bit of 0 (saturates).
    overruns : Out(COUNTER_BITS)
        Bytes dropped because ``o`` still held a byte (saturates).
    clear : In(1)
        Zero both counters (wins over a count in the same cycle).
    """

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(DATA_BITS)),
            "framing_errors": Out(COUNTER_BITS),
            "overruns": Out(COUNTER_BITS),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        first, mid, last = sample_offsets(d)
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1, stages=SYNC_STAGES)
        prev = Signal(init=1)
        m.d.sync += prev.eq(line)
        active = Signal()                            # in a frame (not hunting)
        cnt = Signal(range(d))                       # cycle within the bit
        bit = Signal(range(FRAME_BITS))              # 0 start, 1..8 data, 9 stop
        votes = Signal(2)                            # the first two samples of the bit
        data = Signal(DATA_BITS)
        vote = (votes[0] & votes[1]) | (votes[0] & line) | (votes[1] & line)
        decide = active & (cnt == last)
        good = decide & (bit == FRAME_BITS - 1) & vote
        bad = decide & (bit == FRAME_BITS - 1) & ~vote
        held = self.o.valid & ~self.o.ready
        with m.If(~active):
            # cycle 0 of the start bit; its first sample is 0 when first == 0
            m.d.sync += [active.eq(prev & ~line), cnt.eq(1), bit.eq(0), votes[0].eq(0)]
        with m.Else():
            m.d.sync += cnt.eq(Mux(cnt == d - 1, 0, cnt + 1))
            with m.If(cnt == d - 1):
                m.d.sync += bit.eq(bit + 1)
            with m.If(cnt == first):
                m.d.sync += votes[0].eq(line)
            with m.If(cnt == mid):
                m.d.sync += votes[1].eq(line)
        with m.If(decide):
            with m.If((bit == FRAME_BITS - 1) | ((bit == 0) & vote)):
                m.d.sync += active.eq(0)
            with m.Elif(bit != 0):
                m.d.sync += data.eq(Cat(data[1:], vote))
        with m.If(good & ~held):
            m.d.sync += [self.o.payload.eq(data), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        self._count(m, self.framing_errors, bad)
        self._count(m, self.overruns, good & held)
        return m

    def _count(self, m: Module, counter: Signal, inc) -> None:
        """A saturating counter zeroed by ``clear``."""
        with m.If(self.clear):
            m.d.sync += counter.eq(0)
        with m.Elif(inc & (counter != (1 << COUNTER_BITS) - 1)):
            m.d.sync += counter.eq(counter + 1)
