"""The board top of the system: ``UARTSystem`` on a board's UART pins, clocked by a PLL.

::

    oscillator pin ─► PLL (pll.py) ─► sync domain (reset until lock)
    uart.rx pin ─► UARTSystem (rtl/system/) ─► uart.tx pin
                         busy, error ─► two LEDs

The engine runs at the PLL's achieved frequency (``pll_settings``), which also sets the
UART divisor (``uart.divisor_for``: a baud rate the clock cannot make within 2 % is
refused here, when the top is made). The board needs the resources ``uart`` (``rx``,
``tx``), two ``led`` and its default clock (the oscillator).
"""

from __future__ import annotations

from amaranth import ClockDomain, Elaboratable, Module
from amaranth.lib import io

from ...sim.config import Config
from ..system.system import FRAME_WORDS, UARTSystem
from ..system.uart import DEFAULT_BAUD, divisor_for
from .pll import PLLDomain, PLLSettings, pll_settings

__all__ = ["SystemTop", "BOARD_CLOCKS", "BOARD_LEDS", "BOARD_BUFFER_WORDS", "board_pll"]

#: a board's FPGA family and oscillator (MHz), as amaranth-boards describes it
BOARD_CLOCKS = {"ulx3s-85f": ("ecp5", 25), "icebreaker": ("ice40", 12)}
#: the ``led`` resource numbers showing (busy, error): on the iCEBreaker led 0 is red
#: (pin 11) and led 1 green (pin 37); on the ULX3S leds 0 and 1 are D0 and D1
BOARD_LEDS = {"ulx3s-85f": (0, 1), "icebreaker": (1, 0)}
#: frame buffer words (the largest request payload) where the default FRAME_WORDS does
#: not fit the board's block RAM
BOARD_BUFFER_WORDS = {"icebreaker": 512}


def board_pll(board: str, clock_mhz: float) -> PLLSettings:
    """The PLL setting for an engine clock of ``clock_mhz`` on ``board`` (``ValueError``
    naming the frequency when its PLL cannot make it)."""
    if board not in BOARD_CLOCKS:
        raise ValueError(f"unknown board {board!r}: expected one of "
                         f"{', '.join(BOARD_CLOCKS)}")
    family, osc = BOARD_CLOCKS[board]
    return pll_settings(family, osc, clock_mhz)


class SystemTop(Elaboratable):
    """``UARTSystem(cfg)`` on a board, its engine clock from the PLL.

    Parameters
    ----------
    cfg : Config
    clock_mhz : float
        The requested engine clock; the PLL makes the nearest frequency it can
        (``self.pll.out_mhz``).
    baud : int
        The UART's line rate.
    board : str
        A key of :data:`BOARD_CLOCKS`.
    buffer_words : int or None
        The frame buffer's depth; by default :data:`BOARD_BUFFER_WORDS` for the board, else
        ``FRAME_WORDS``.
    """

    def __init__(self, cfg: Config, clock_mhz: float, baud: int = DEFAULT_BAUD,
                 board: str = "ulx3s-85f", buffer_words: int | None = None):
        self.cfg, self.baud, self.board = cfg, baud, board
        try:
            self.pll = board_pll(board, clock_mhz)
            self.clock_hz = self.pll.out_hz
            try:
                self.divisor = divisor_for(self.clock_hz, baud)
            except ValueError as e:
                raise ValueError(f"baud {baud} on {board} with the engine clock at "
                                 f"{float(self.pll.out_mhz):.4f} MHz: {e}") from None
        except ValueError:
            self._MustUse__silence = True   # refused: no "created but never used" warning
            raise
        self.buffer_words = buffer_words or BOARD_BUFFER_WORDS.get(board, FRAME_WORDS)

    def elaborate(self, platform):
        m = Module()
        family, osc = BOARD_CLOCKS[self.board]
        got = (str(platform.family).lower(), platform.default_clk_frequency / 1e6)
        if got != (family, osc):
            raise ValueError(f"SystemTop for {self.board} ({family}, {osc} MHz) elaborated "
                             f"on a {got[0]} platform with a {got[1]:g} MHz clock")
        m.domains.sync = ClockDomain("sync")
        clk = platform.request(platform.default_clk, dir="-")
        m.submodules.clock = PLLDomain(self.pll, clk, "sync")
        m.submodules.system = system = UARTSystem(self.cfg, self.clock_hz, self.baud,
                                                  self.buffer_words)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        busy_led, error_led = BOARD_LEDS[self.board]
        m.submodules.led_busy = busy = io.Buffer("o", platform.request("led", busy_led,
                                                                        dir="-"))
        m.submodules.led_error = error = io.Buffer("o", platform.request("led", error_led,
                                                                          dir="-"))
        m.d.comb += [system.rx.eq(rx.i), tx.o.eq(system.tx),
                     busy.o.eq(system.busy), error.o.eq(system.error)]
        return m
