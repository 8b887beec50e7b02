"""The engine clock of a board: a PLL on the board oscillator, and the clock domain it drives.

Divider settings are computed here, in Python, by searching every legal setting for the one
whose output is nearest to the requested frequency (as Project Trellis's ``ecppll`` and
IceStorm's ``icepll`` do):

* ECP5 ``EHXPLLL``, feedback from ``CLKOP``: ``f_pfd = f_in / CLKI_DIV``,
  ``f_out = f_pfd * CLKFB_DIV``, ``f_vco = f_out * CLKOP_DIV``; ``CLKI_DIV`` 1..128,
  ``CLKFB_DIV`` 1..80, ``CLKOP_DIV`` 1..128; input 8..400 MHz, PFD 3.125..400 MHz, VCO
  400..800 MHz, output 10..400 MHz. Among equally near outputs the VCO nearest 600 MHz
  wins. ``CLKOP_CPHASE = CLKOP_DIV // 2`` (ecppll's half-period phase, what Lattice's
  tools set).
* iCE40 ``SB_PLL40_PAD`` / ``SB_PLL40_CORE``, ``FEEDBACK_PATH = "SIMPLE"``:
  ``f_pfd = f_in / (DIVR + 1)``, ``f_vco = f_pfd * (DIVF + 1)``,
  ``f_out = f_vco / 2 ** DIVQ``; ``DIVR`` 0..15, ``DIVF`` 0..127, ``DIVQ`` 1..6; input and
  PFD 10..133 MHz, VCO 533..1066 MHz, output 16..275 MHz; ``FILTER_RANGE`` from the PFD
  frequency (icepll's table).

A request whose nearest setting misses it by more than ``PLL_TOLERANCE`` (relative), or
that lies outside the output range, raises ``ValueError`` naming the frequency. The
achieved frequency is :attr:`PLLSettings.out_mhz`; the engine is built for it (the UART
divisor comes from it) and nextpnr times the design at it: both nextpnr-ecp5 and
nextpnr-ice40 derive the PLL output's clock constraint from the oscillator pin's
constraint and these dividers ("Derived frequency constraint ... for net ...").

:class:`PLLDomain` instantiates the PLL for a board's oscillator pin and makes a clock
domain of its output, held in reset until the PLL reports lock and then for
``HOLD_US`` more (iCE40 block RAMs read zeros for about 3 us after configuration).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.hdl import DomainRenamer
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["PLLSettings", "PLL_TOLERANCE", "ECP5_LIMITS", "ICE40_LIMITS", "ecp5_pll",
           "ice40_pll", "pll_settings", "LockHold", "PLLDomain", "HOLD_US"]

#: the largest relative difference between the requested and the achieved output
PLL_TOLERANCE = 0.02
#: the domain's reset is held this long after the PLL locks
HOLD_US = 15.0

# (min, max) in MHz
ECP5_LIMITS = {"in": (8, 400), "pfd": (Fraction(25, 8), 400), "vco": (400, 800),
               "out": (10, 400)}
ICE40_LIMITS = {"in": (10, 133), "pfd": (10, 133), "vco": (533, 1066), "out": (16, 275)}
_ECP5_VCO_MID = 600


@dataclass(frozen=True)
class PLLSettings:
    """One PLL setting: the family (``"ecp5"`` or ``"ice40"``), the frequencies in MHz
    (exact fractions) and the divider parameters under their primitive's names."""

    family: str
    in_mhz: Fraction
    requested_mhz: Fraction
    out_mhz: Fraction
    pfd_mhz: Fraction
    vco_mhz: Fraction
    params: dict[str, int] = field(default_factory=dict)

    @property
    def out_hz(self) -> int:
        """The achieved frequency rounded to a whole hertz."""
        return round(self.out_mhz * 1_000_000)

    @property
    def error(self) -> float:
        """Relative difference of the achieved frequency from the requested one."""
        return float(abs(self.out_mhz - self.requested_mhz) / self.requested_mhz)

    def describe(self) -> str:
        divs = ", ".join(f"{k} {v}" for k, v in self.params.items())
        return (f"{self.family} PLL {float(self.in_mhz):g} MHz -> {float(self.out_mhz):.4f} "
                f"MHz (requested {float(self.requested_mhz):g}; PFD "
                f"{float(self.pfd_mhz):.4f}, VCO {float(self.vco_mhz):.3f} MHz; {divs})")


def _mhz(value, what: str) -> Fraction:
    try:
        f = Fraction(value).limit_denominator(1_000_000)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {value!r} is not a frequency in MHz") from None
    if f <= 0:
        raise ValueError(f"{what} {value!r} MHz must be positive")
    return f


def _check(family: str, limits: dict, f_in: Fraction, f_out: Fraction) -> None:
    lo, hi = limits["in"]
    if not lo <= f_in <= hi:
        raise ValueError(f"{family} PLL input {float(f_in):g} MHz is outside "
                         f"{float(lo):g}..{float(hi):g} MHz")
    lo, hi = limits["out"]
    if not lo <= f_out <= hi:
        raise ValueError(f"{family} PLL cannot make {float(f_out):g} MHz: its output range "
                         f"is {float(lo):g}..{float(hi):g} MHz")


def _accept(best: PLLSettings | None, family: str, f_in: Fraction, f_out: Fraction,
            tolerance: float) -> PLLSettings:
    if best is None or best.error > tolerance:
        near = f"; nearest {float(best.out_mhz):.4f} MHz" if best else ""
        raise ValueError(f"{family} PLL cannot make {float(f_out):g} MHz from "
                         f"{float(f_in):g} MHz within {tolerance:.1%}{near}")
    return best


def ecp5_pll(in_mhz, out_mhz, tolerance: float = PLL_TOLERANCE) -> PLLSettings:
    """The ``EHXPLLL`` setting (feedback from ``CLKOP``) nearest to ``out_mhz``."""
    f_in, f_out = _mhz(in_mhz, "ECP5 PLL input"), _mhz(out_mhz, "ECP5 PLL output")
    lim = ECP5_LIMITS
    _check("ECP5", lim, f_in, f_out)
    best, key = None, None
    for clki in range(1, 129):
        pfd = f_in / clki
        if not lim["pfd"][0] <= pfd <= lim["pfd"][1]:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            if not lim["out"][0] <= out <= lim["out"][1]:
                continue
            # CLKOP_DIV: the VCO in range, nearest its middle
            lo = max(1, -(-lim["vco"][0] // out))
            hi = min(128, int(lim["vco"][1] // out))
            if lo > hi:
                continue
            op = min(max(round(_ECP5_VCO_MID / out), lo), hi)
            vco = out * op
            k = (abs(out - f_out), abs(vco - _ECP5_VCO_MID))
            if key is None or k < key:
                key = k
                best = PLLSettings("ecp5", f_in, f_out, out, pfd, vco, {
                    "CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": op,
                    "CLKOP_CPHASE": op // 2})
    return _accept(best, "ECP5", f_in, f_out, tolerance)


def _ice40_filter_range(pfd: Fraction) -> int:
    for i, edge in enumerate((17, 26, 44, 66, 101), start=1):
        if pfd < edge:
            return i
    return 6


def ice40_pll(in_mhz, out_mhz, tolerance: float = PLL_TOLERANCE) -> PLLSettings:
    """The ``SB_PLL40_*`` setting (``SIMPLE`` feedback) nearest to ``out_mhz``."""
    f_in, f_out = _mhz(in_mhz, "iCE40 PLL input"), _mhz(out_mhz, "iCE40 PLL output")
    lim = ICE40_LIMITS
    _check("iCE40", lim, f_in, f_out)
    best = None
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not lim["pfd"][0] <= pfd <= lim["pfd"][1]:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not lim["vco"][0] <= vco <= lim["vco"][1]:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                if not lim["out"][0] <= out <= lim["out"][1]:
                    continue
                if best is None or abs(out - f_out) < abs(best.out_mhz - f_out):
                    best = PLLSettings("ice40", f_in, f_out, out, pfd, vco, {
                        "DIVR": divr, "DIVF": divf, "DIVQ": divq,
                        "FILTER_RANGE": _ice40_filter_range(pfd)})
    return _accept(best, "iCE40", f_in, f_out, tolerance)


def pll_settings(family: str, in_mhz, out_mhz, tolerance: float = PLL_TOLERANCE
                 ) -> PLLSettings:
    """:func:`ecp5_pll` or :func:`ice40_pll` by family name (``ecp5``, ``ice40``; any
    case, as Amaranth platforms spell it)."""
    fam = family.lower()
    if fam == "ecp5":
        return ecp5_pll(in_mhz, out_mhz, tolerance)
    if fam == "ice40":
        return ice40_pll(in_mhz, out_mhz, tolerance)
    raise ValueError(f"no PLL for FPGA family {family!r} (expected ecp5 or ice40)")


class LockHold(wiring.Component):
    """``ready`` rises ``hold_cycles`` cycles after ``locked`` (synchronized by two
    flip-flops) has been high throughout, and falls within three cycles of ``locked``
    falling.

    Members
    -------
    locked : In(1)
        The PLL's lock output (asynchronous).
    ready : Out(1)
        A register; its domain's reset is ``~ready``.
    """

    def __init__(self, hold_cycles: int):
        if hold_cycles < 1:
            self._MustUse__silence = True   # refused: no "created but never used" warning
            raise ValueError(f"hold_cycles {hold_cycles} must be at least 1")
        self.hold_cycles = hold_cycles
        super().__init__({"locked": In(1), "ready": Out(1)})

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        m.submodules.sync_lock = FFSynchronizer(self.locked, locked)
        timer = Signal(range(self.hold_cycles + 1))
        with m.If(~locked):
            m.d.sync += [timer.eq(0), self.ready.eq(0)]
        with m.Elif(timer == self.hold_cycles - 1):
            m.d.sync += self.ready.eq(1)
        with m.Else():
            m.d.sync += timer.eq(timer + 1)
        return m


class PLLDomain(Elaboratable):
    """Clock and reset of domain ``domain`` from a PLL on a board's oscillator pin (the
    parent defines the domain: ``m.domains += ClockDomain(domain)``).

    Parameters
    ----------
    settings : PLLSettings
    clk_port
        The oscillator's port as ``platform.request(clk, dir="-")`` gives it. On ECP5 an
        input buffer feeds ``EHXPLLL.CLKI``; on iCE40 the pin is the ``PACKAGEPIN`` of an
        ``SB_PLL40_PAD`` (the iCEBreaker's 12 MHz oscillator is on pin 35, IOT_46b_G0,
        the UP5K's PLL input pad).
    domain : str
        The domain driven (default ``sync``): clocked by the PLL output, reset until the
        PLL locks and ``HOLD_US`` after (a counter in a reset-less domain on the same
        clock, :class:`LockHold`).

    Members
    -------
    clk, locked : Signal
        The PLL's output and lock (for tests and LEDs).
    """

    def __init__(self, settings: PLLSettings, clk_port, domain: str = "sync"):
        self.settings, self.clk_port, self.domain = settings, clk_port, domain
        self.clk = Signal()
        self.locked = Signal()
        self.hold_cycles = max(1, int(HOLD_US * settings.out_mhz))

    def elaborate(self, platform):
        m = Module()
        s = self.settings
        if s.family == "ecp5":
            m.submodules.clk_buf = buf = io.Buffer("i", self.clk_port)
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{float(s.in_mhz):g}",
                a_FREQUENCY_PIN_CLKOP=f"{float(s.out_mhz):.6g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
                p_CLKOP_ENABLE="ENABLED", p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                **{f"p_{k}": v for k, v in s.params.items()},
                i_CLKI=buf.i, i_CLKFB=self.clk, o_CLKOP=self.clk, o_LOCK=self.locked,
                i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=0,
                i_PHASESTEP=0, i_PHASELOADREG=0, i_PLLWAKESYNC=0, i_ENCLKOP=0)
        elif s.family == "ice40":
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                **{f"p_{k}": v for k, v in s.params.items()},
                i_PACKAGEPIN=self.clk_port.io, o_PLLOUTGLOBAL=self.clk, o_LOCK=self.locked,
                i_RESETB=1, i_BYPASS=0)
        else:
            raise ValueError(f"no PLL for FPGA family {s.family!r}")
        hold = f"{self.domain}_pll_hold"
        m.domains += ClockDomain(hold, reset_less=True, local=True)
        m.submodules.hold = lock = DomainRenamer(hold)(LockHold(self.hold_cycles))
        m.d.comb += [ClockSignal(hold).eq(self.clk), ClockSignal(self.domain).eq(self.clk),
                     lock.locked.eq(self.locked), ResetSignal(self.domain).eq(~lock.ready)]
        return m
