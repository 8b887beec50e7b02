# amaranth: UnusedElaboratable=no
"""The UART (rtl/system/uart.py) in Amaranth's simulator against bit-level Python models
written here: a strict line decoder for the transmitter (every bit exactly ``divisor``
cycles) and a line driver for the receiver (its own bit period, fractional time
accumulated, a random phase against the clock, idle gaps, glitches and noise).

The transmitter's input gets random gaps, the receiver's output random backpressure
(tb/streams.py checks the stream rules). The seed is printed (DS_SEED overrides it); a
mismatch prints both sides."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.back import verilog

from doublesparse.rtl.system import UARTRx, UARTTx, divisor_for
from doublesparse.rtl.system.uart import DEFAULT_BAUD
from doublesparse.tb.amaranth_harness import simulate
from doublesparse.tb.streams import Sink, Source, seed_for

# the frame, spelled here independently of the RTL: start 0, 8 data bits LSB first, stop 1
BITS = 10


def _rng(name: str) -> np.random.Generator:
    seed = seed_for(name)
    print(f"seed {seed} (name {name!r}; set DS_SEED to change)")
    return np.random.default_rng(seed)


def _bytes(rng, n: int) -> list[int]:
    return [int(b) for b in rng.integers(0, 256, n)]


def _compare(got: list[int], want: list[int], what: str) -> None:
    assert got == want, (f"{what}: {len(got)} bytes, {len(want)} expected\n"
                         f"  rtl:       {[hex(b) for b in got]}\n"
                         f"  reference: {[hex(b) for b in want]}")


def decode_line(line: list[int], divisor: int) -> list[tuple[int, int]]:
    """(first cycle of the start bit, byte) of every frame on a line sampled once a cycle.
    Every bit must hold its level for exactly ``divisor`` cycles; the stop bit must be 1."""
    frames, n = [], 0
    while n < len(line):
        if line[n]:
            n += 1
            continue
        cells = [line[n + k * divisor: n + (k + 1) * divisor] for k in range(BITS)]
        assert len(cells[-1]) == divisor, f"frame at cycle {n} cut off by the end of the run"
        for k, cell in enumerate(cells):
            assert len(set(cell)) == 1, f"frame at cycle {n}: bit {k} not constant: {cell}"
        assert cells[-1][0] == 1, f"frame at cycle {n}: stop bit 0"
        frames.append((n, sum(cells[1 + k][0] << k for k in range(8))))
        n += BITS * divisor
    return frames


class Wave:
    """A line driven by a Python transmitter with bit period ``divisor * (1 + err)``
    cycles and a random phase against the receiver's clock: ``levels[n]`` is the line in
    cycle ``n``. ``frames`` are (byte, stop bit); ``gaps`` the idle before each frame, in
    bits (idle is always at least one bit at the start and the end)."""

    def __init__(self, frames, divisor: int, err: float, gaps, rng):
        period = divisor * (1 + err)
        t = float(rng.random())                  # the clock's phase against the line
        segments = []                            # (start time, level, frame, bit)
        for f, ((byte, stop), gap) in enumerate(zip(frames, gaps, strict=True)):
            if gap:
                segments.append((t, 1, None, None))
                t += gap * period
            bits = [0] + [byte >> k & 1 for k in range(8)] + [stop]
            for k, b in enumerate(bits):
                segments.append((t, b, f, k))
                t += period
        segments.append((t, 1, None, None))
        end = t + 2 * period
        n = math.ceil(end)
        self.levels = np.ones(n, dtype=np.int8)
        self.cells = []                          # (first cycle, end cycle, frame, bit)
        for (t0, b, f, k), t1 in zip(segments, [s[0] for s in segments[1:]] + [end],
                                     strict=True):
            c0, c1 = math.ceil(t0), math.ceil(t1)
            self.levels[c0:c1] = b
            self.cells.append((c0, c1, f, k))

    def glitch(self, rng, divisor: int) -> int:
        """Pulse the line low for 1 to under a quarter bit inside idle gaps at least two
        bits long, at least a bit away from the next frame; the number of glitches."""
        count = 0
        for c0, c1, f, _ in self.cells:
            length = int(rng.integers(1, max(2, math.ceil(divisor / 4))))
            if f is None and c1 - c0 >= 2 * divisor and c1 < len(self.levels) - divisor:
                at = int(rng.integers(c0 + 1, c1 - divisor - length))
                self.levels[at:at + length] = 0
                count += 1
        return count

    def noise(self, rng, p: float) -> int:
        """Flip one cycle inside a random data bit of the first frame and of each other
        frame with probability ``p``; the number of flips."""
        data_cells = [(c0, c1, f) for c0, c1, f, k in self.cells
                      if f is not None and 1 <= k <= 8 and c1 - c0 > 2]
        count = 0
        for f in sorted({f for _, _, f in data_cells}):
            if f == 0 or rng.random() < p:
                cells = [(c0, c1) for c0, c1, g in data_cells if g == f]
                c0, c1 = cells[int(rng.integers(len(cells)))]
                self.levels[int(rng.integers(c0 + 1, c1 - 1))] ^= 1
                count += 1
        return count


async def _drive_rx(ctx, dut: UARTRx, levels, sink: Sink, t0: int = 0) -> int:
    """Drive ``levels`` on ``rx``, one a cycle, with ``sink`` on ``o``; the next cycle."""
    last = None
    for n, level in enumerate(levels):
        sink.drive(ctx)
        if level != last:
            ctx.set(dut.rx, int(level))
            last = level
        sink.observe(ctx, t0 + n)
        await ctx.tick()
    return t0 + len(levels)


async def _drain(ctx, dut: UARTRx, sink: Sink, t: int) -> int:
    """Idle line until ``o`` is empty (``sink`` permitting); the next cycle."""
    for _ in range(1000):
        if not ctx.get(dut.o.valid):
            return t
        t = await _drive_rx(ctx, dut, [1], sink, t)
    raise AssertionError(f"cycle {t}: o still valid after 1000 cycles")


# ---------------------------------------------------------------------------------------
# 1. loopback


class _Loop(Elaboratable):
    def __init__(self, divisor: int):
        self.tx, self.rx = UARTTx(divisor), UARTRx(divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize("divisor,n", [(4, 300), (5, 200), (16, 80), (217, 12)])
def test_loopback(divisor, n) -> None:
    """TX into RX: random gaps on ``i``, backpressure on ``o`` (a byte every ten bits at
    most, so no overrun): every byte in order, no framing error or overrun."""
    rng = _rng(f"loop{divisor}")
    data = _bytes(rng, n)
    top = _Loop(divisor)
    src = Source(top.tx.i, data, rng, p_valid=0.4)
    sink = Sink(top.rx.o, rng, p_ready=0.3, name="rx.o")
    limit = 40 * BITS * divisor * n

    async def bench(ctx):
        t = 0
        while len(sink.got) < n:
            assert t < limit, f"stuck at cycle {t}: {len(sink.got)} of {n} bytes"
            src.drive(ctx)
            sink.drive(ctx)
            src.observe(ctx)
            sink.observe(ctx, t)
            await ctx.tick()
            t += 1
        for _ in range(2 * BITS * divisor):
            sink.drive(ctx)
            sink.observe(ctx, t)
            await ctx.tick()
            t += 1
        assert ctx.get(top.rx.framing_errors) == 0 and ctx.get(top.rx.overruns) == 0
        assert ctx.get(top.tx.busy) == 0
        print(f"{n} bytes in {t} cycles")

    simulate(top, bench)
    _compare(sink.got, data, "loopback")


# ---------------------------------------------------------------------------------------
# 2. transmitter timing


@pytest.mark.parametrize("divisor,n,p_valid", [(4, 200, 1.0), (5, 100, 0.3), (16, 60, 1.0),
                                               (16, 40, 0.1), (217, 10, 1.0)])
def test_tx_line(divisor, n, p_valid) -> None:
    """``tx`` decoded by the strict decoder equals the bytes sent, in order; ``i.ready``
    does not follow ``i.valid``; with ``i`` always valid, byte ``k`` starts its start bit
    at cycle ``1 + 10 * divisor * k`` and the line is idle again (``busy`` low) at cycle
    ``10 * n * divisor + 1``: 10 bits a byte plus one cycle of latency."""
    rng = _rng(f"tx{divisor}{p_valid}")
    data = _bytes(rng, n)
    dut = UARTTx(divisor)
    src = Source(dut.i, data, rng, p_valid=p_valid)
    line, busy = [], []

    async def bench(ctx):
        t = 0
        while not src.done or ctx.get(dut.busy):
            assert t < 30 * BITS * divisor * n / p_valid, f"stuck at cycle {t}"
            ready = []
            for v in (0, 1):
                ctx.set(dut.i.valid, v)
                ready.append(ctx.get(dut.i.ready))
            assert ready[0] == ready[1], f"cycle {t}: i.ready follows i.valid"
            src.drive(ctx)
            line.append(ctx.get(dut.tx))
            busy.append(ctx.get(dut.busy))
            src.observe(ctx)
            await ctx.tick()
            t += 1
        for _ in range(3 * divisor):
            line.append(ctx.get(dut.tx))
            await ctx.tick()

    simulate(dut, bench)
    frames = decode_line(line, divisor)
    _compare([b for _, b in frames], data, "tx line")
    if p_valid == 1.0:
        starts = [s for s, _ in frames]
        want = [1 + BITS * divisor * k for k in range(n)]
        assert starts == want, f"start bits at {starts[:8]}..., expected {want[:8]}..."
        idle = len(busy)
        assert idle == BITS * divisor * n + 1, f"idle at cycle {idle}"
        assert all(busy[1:idle]) and not busy[0], "busy low inside the run"
        print(f"{n} bytes in {idle} cycles = 10 * {n} * {divisor} + 1")


# ---------------------------------------------------------------------------------------
# 3. receiver against the line driver


@pytest.mark.parametrize("divisor,err,n", [
    (4, -0.02, 150), (4, 0.02, 150), (5, -0.02, 150), (5, 0.02, 150), (8, -0.02, 100),
    (8, 0.02, 100), (16, -0.02, 60), (16, 0.02, 60), (16, None, 60), (217, -0.02, 8),
    (217, 0.02, 8), (217, None, 8), (4, 0.0, 150)])
def test_rx_line(divisor, err, n) -> None:
    """Random bytes at a baud error ``err`` (None: random in -2..+2 %), idle gaps of 0 to
    3 bits (half back to back), glitches under a quarter bit in idle gaps (divisor >= 8)
    and one-cycle noise inside data bits (divisor >= 5, or no baud error: at divisor 4
    and 2 % an outer sample of the last bits may fall outside the bit, leaving no vote to
    spare): the bytes arrive in order, no framing error or overrun."""
    rng = _rng(f"rx{divisor}{err}")
    if err is None:
        err = float(rng.uniform(-0.02, 0.02))
    data = _bytes(rng, n)
    gaps = [1.0] + [0.0 if rng.random() < 0.5 else float(rng.uniform(0.1, 3)) for _ in
                    range(n - 1)]
    gaps[n // 2] = 2.5                             # room for a glitch at least once
    wave = Wave([(b, 1) for b in data], divisor, err, gaps, rng)
    glitches = wave.glitch(rng, divisor) if divisor >= 8 else 0
    noise = wave.noise(rng, 0.7) if divisor >= 5 or err == 0 else 0
    assert glitches or divisor < 8, "no idle gap long enough for a glitch"
    assert noise or (divisor < 5 and err != 0), "no noise pulse"
    dut = UARTRx(divisor)
    sink = Sink(dut.o, rng, p_ready=0.3, name="o")

    async def bench(ctx):
        await _drain(ctx, dut, sink, await _drive_rx(ctx, dut, wave.levels, sink))
        assert ctx.get(dut.framing_errors) == 0, "framing errors"
        assert ctx.get(dut.overruns) == 0, "overruns"

    simulate(dut, bench)
    print(f"err {err:+.2%}, {glitches} glitches, {noise} noise pulses, "
          f"{len(wave.levels)} cycles")
    _compare(sink.got, data, "rx")


# ---------------------------------------------------------------------------------------
# 4. framing errors, 5. overrun


@pytest.mark.parametrize("divisor", [5, 16])
def test_framing_errors(divisor) -> None:
    """Frames with a stop bit of 0 (followed by a bit of idle) are counted and dropped,
    the good frames after them arrive; a break (the line low for three frames) counts one;
    ``clear`` zeroes the counter."""
    rng = _rng(f"framing{divisor}")
    frames = [(b, int(rng.random() < 0.6)) for b in _bytes(rng, 16)]
    gaps = [1.0] + [1.0 if frames[k - 1][1] == 0 else float(rng.choice([0, 1.5]))
                    for k in range(1, len(frames))]
    wave = Wave(frames, divisor, 0.0, gaps, rng)
    brk = [0] * (3 * BITS * divisor) + [1] * (2 * divisor)
    after = Wave([(0xA5, 1)], divisor, 0.0, [1.0], rng)
    want = [b for b, stop in frames if stop] + [0xA5]
    bad = len(frames) + 2 - len(want)
    dut = UARTRx(divisor)
    sink = Sink(dut.o, rng, p_ready=0.5, name="o")

    async def bench(ctx):
        levels = np.concatenate([wave.levels, brk, after.levels])
        await _drain(ctx, dut, sink, await _drive_rx(ctx, dut, levels, sink))
        got = ctx.get(dut.framing_errors)
        assert got == bad, f"framing_errors {got}, expected {bad}"
        assert ctx.get(dut.overruns) == 0
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert ctx.get(dut.framing_errors) == 0, "clear did not zero framing_errors"

    simulate(dut, bench)
    print(f"{len(frames)} frames, {bad - 1} with a stop bit of 0, a break")
    _compare(sink.got, want, "rx after framing errors")


def test_overrun() -> None:
    """``o.ready`` low: the first byte waits on ``o``, two more are dropped and counted; it
    then arrives intact and one more byte after it; ``clear`` zeroes ``overruns``."""
    rng = _rng("overrun")
    divisor = 8
    data = _bytes(rng, 4)
    wave = Wave([(b, 1) for b in data[:3]], divisor, 0.0, [1.0, 0.0, 0.5], rng)
    tail = Wave([(data[3], 1)], divisor, 0.0, [1.0], rng)
    dut = UARTRx(divisor)
    sink = Sink(dut.o, rng, p_ready=0.0, name="o")

    async def bench(ctx):
        t = await _drive_rx(ctx, dut, wave.levels, sink)
        assert sink.got == [], f"delivered with o.ready low: {sink.got}"
        assert ctx.get(dut.o.valid), "first byte not held"
        assert ctx.get(dut.overruns) == 2, f"overruns {ctx.get(dut.overruns)}, expected 2"
        sink.p = 0.5
        t = await _drive_rx(ctx, dut, [1] * 20, sink, t)
        assert sink.got == data[:1], f"after the overrun: {sink.got}, expected {data[:1]}"
        await _drain(ctx, dut, sink, await _drive_rx(ctx, dut, tail.levels, sink, t))
        assert ctx.get(dut.overruns) == 2 and ctx.get(dut.framing_errors) == 0
        ctx.set(dut.clear, 1)
        await ctx.tick()
        assert ctx.get(dut.overruns) == 0, "clear did not zero overruns"

    simulate(dut, bench)
    _compare(sink.got, [data[0], data[3]], "overrun")


# ---------------------------------------------------------------------------------------
# 6. parameters


def test_parameters() -> None:
    for cls in (UARTTx, UARTRx):
        with pytest.raises(ValueError, match=r"\b3\b"):
            cls(3)
    with pytest.raises(ValueError, match=r"412000.*100000"):
        divisor_for(412_000, 100_000)              # divisor 4: 103 000 baud, 3 %
    with pytest.raises(ValueError, match=r"300000.*100000"):
        divisor_for(300_000, 100_000)              # divisor 3
    assert divisor_for(408_000, 100_000) == 4      # 2 %: accepted
    assert divisor_for(25_000_000) == 217          # 115 207 baud
    assert divisor_for(12_000_000, DEFAULT_BAUD) == 104
    for cls in (UARTTx, UARTRx):
        t0 = time.perf_counter()
        assert "module" in verilog.convert(cls(217))
        print(f"{cls.__name__}(217) to Verilog in {time.perf_counter() - t0:.2f} s")
