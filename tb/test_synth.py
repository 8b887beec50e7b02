"""`eco_bram_registers`: the ECO between nextpnr's placement and routing, checked on a
small hand-made placed design (no tool runs). Legality is checked here with rules written
out again, not with the module's own checker. The ECO is opt-in: the default flow (the
`synth` function and `doublesparse synth` without options) has none, and its default
placement seed is 1 (tools and the netlist replaced by fakes, so no test here runs
Yosys or nextpnr)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.lib import io

from doublesparse.scripts.synth import ECO_NEAR, SynthError, eco_bram_registers

RAM = (5, 10)            # the activation block RAM's tile
WRAM = (25, 1)           # the weight block RAM's tile
TILES = [(x, y) for x in range(1, 31) for y in range(1, 31) if y not in (1, 10)]


def _ff(bel: str, m: int, clk: int = 2, ce: int = 50) -> dict:
    return {"type": "TRELLIS_FF",
            "parameters": {"CEMUX": "CE", "CLKMUX": "CLK", "GSR": "ENABLED", "LSRMUX": "LSR",
                           "SD": "0 "},
            "attributes": {"NEXTPNR_BEL": bel},
            "connections": {"CLK": [clk], "CE": [ce], "LSR": [3], "M": [m], "Q": [m + 1000]}}


def _comb(bel: str, mode: str | None = None) -> dict:
    return {"type": "TRELLIS_COMB", "parameters": {"MODE": mode} if mode else {},
            "attributes": {"NEXTPNR_BEL": bel}, "connections": {"F": [9000], "A": [9001]}}


def _ram(xy: tuple[int, int], first_bit: int) -> dict:
    return {"type": "DP16KD", "parameters": {},
            "attributes": {"NEXTPNR_BEL": f"X{xy[0]}/Y{xy[1]}/EBR0"},
            "connections": {f"DO{i}": [first_bit + i] for i in range(18)}}


def _design() -> dict:
    cells = {f"lut{x}_{y}": _comb(f"X{x}/Y{y}/SLICED.K1") for x, y in TILES}
    cells["engine.act_mem.bank0"] = _ram(RAM, 100)
    cells["engine.wgt_mem0.0"] = _ram(WRAM, 200)
    # activation registers 18 tiles and more away (in pairs, one clock enable per slice)
    for i in range(10):
        cells[f"n[{i}]"] = _ff(f"X{17 + i // 8}/Y{18}/SLICE{'ABCD'[i % 8 // 2]}.FF{i % 2}", 100 + i)
    cells["near"] = _ff(f"X{RAM[0] + 3}/Y{RAM[1] + 2}/SLICEA.FF0", 110, ce=51)  # 5 tiles: stays
    # obstacles next to the block RAM: another clock in (5, 9), distributed RAM in slice A of
    # (4, 9), a RAM write port in (5, 11), another clock enable in slice A of (6, 9)
    cells["other_clk"] = _ff("X5/Y9/SLICEA.FF0", 5000, clk=7)
    cells["dpram"] = _comb("X4/Y9/SLICEA.K0", "DPRAM")
    cells["ramw"] = {"type": "TRELLIS_RAMW", "parameters": {},
                     "attributes": {"NEXTPNR_BEL": "X5/Y11/SLICEC.RAMW"}, "connections": {}}
    cells["other_ce"] = _ff("X6/Y9/SLICEA.FF0", 5001, ce=52)
    # weight registers: 28 tiles away (stays), 53 and 52 tiles away (move to 25 tiles on
    # their line)
    cells["w_ok"] = _ff(f"X{WRAM[0]}/Y{WRAM[1] + 28}/SLICEA.FF0", 200)
    cells["w_far"] = _ff("X1/Y30/SLICEA.FF0", 201, ce=53)
    cells["w_far2"] = _ff("X2/Y30/SLICEB.FF0", 202, ce=54)
    return {"modules": {"top": {"cells": cells, "settings": {"target_freq": "12000000.000000"}}}}


def _xy(bel: str) -> tuple[int, int]:
    x, y = bel.split("/")[:2]
    return int(x[1:]), int(y[1:])


def _check_legal(cells: dict) -> None:
    """One clock and set/reset per tile, one clock enable per slice, one cell per bel, no
    flip-flop in a slice with distributed RAM or a tile with a RAM write port."""
    clk: dict = {}
    ce: dict = {}
    bels: dict = {}
    for n, c in cells.items():
        bel = c["attributes"]["NEXTPNR_BEL"]
        assert bel not in bels, f"{n} and {bels[bel]} both on {bel}"
        bels[bel] = n
        if c["type"] == "TRELLIS_FF":
            t, sl = _xy(bel), bel.split(".")[0]
            clk.setdefault(t, set()).add((c["connections"]["CLK"][0], c["connections"]["LSR"][0]))
            ce.setdefault(sl, set()).add(c["connections"]["CE"][0])
    assert all(len(v) == 1 for v in clk.values()), clk
    assert all(len(v) == 1 for v in ce.values()), ce


def test_eco_moves_far_registers() -> None:
    d = _design()
    cells = d["modules"]["top"]["cells"]
    before = {n: c["attributes"]["NEXTPNR_BEL"] for n, c in cells.items()}
    moved, worst = eco_bram_registers(d, clock_mhz=125.0)
    after = {n: c["attributes"]["NEXTPNR_BEL"] for n, c in cells.items()}
    changed = sorted(n for n in after if after[n] != before[n])
    assert changed == sorted([f"n[{i}]" for i in range(10)] + ["w_far", "w_far2"]), changed
    assert moved == 12
    _check_legal(cells)
    dist = {n: abs(_xy(after[n])[0] - RAM[0]) + abs(_xy(after[n])[1] - RAM[1])
            for n in changed if n.startswith("n[")}
    # ten registers with one clock enable: five slices; the nearest free, legal slices
    # are (5, 9) no (other clock), (4, 9) B-D, (6, 9) B-D, (5, 11) no (RAM write port):
    # all within two tiles
    assert max(dist.values()) <= 2, dist
    assert "X5/Y9/" not in " ".join(after[n] for n in changed)
    assert all(not after[n].startswith("X4/Y9/SLICEA") for n in changed)
    assert all(not after[n].startswith("X5/Y11/") for n in changed)
    # the far weight registers land near the point 25 tiles along their line
    for n in ("w_far", "w_far2"):
        bx, by = _xy(before[n])
        d0 = abs(bx - WRAM[0]) + abs(by - WRAM[1])
        t = (WRAM[0] + (bx - WRAM[0]) * 25 / d0, WRAM[1] + (by - WRAM[1]) * 25 / d0)
        ax, ay = _xy(after[n])
        assert abs(ax - t[0]) + abs(ay - t[1]) <= 2, (n, after[n], t)
    assert worst == max(max(dist.values()),
                        *(abs(_xy(after[n])[0] - WRAM[0]) + abs(_xy(after[n])[1] - WRAM[1])
                          for n in ("w_far", "w_far2")))
    assert all(c["attributes"]["BEL_STRENGTH"] == format(6, "032b") for c in cells.values())
    assert d["modules"]["top"]["settings"]["target_freq"] == "125000000.000000"
    assert ECO_NEAR < 18


def test_eco_errors() -> None:
    d = _design()
    cells = d["modules"]["top"]["cells"]
    cells["clash"] = _ff("X2/Y18/SLICEA.FF1", 6000, clk=8)
    cells["clash2"] = _ff("X2/Y18/SLICEB.FF0", 6001, clk=9)   # two clocks in tile (2, 18)
    with pytest.raises(SynthError, match=r"legality model at tile \(2, 18\)"):
        eco_bram_registers(d)
    # the only logic tile holds a RAM write port, which the ECO leaves alone
    d = {"modules": {"top": {"cells": {
        "engine.act_mem.bank0": _ram(RAM, 100),
        "n[0]": _ff("X18/Y18/SLICEA.FF0", 100),
        "ramw": {"type": "TRELLIS_RAMW", "parameters": {},
                 "attributes": {"NEXTPNR_BEL": "X18/Y18/SLICEC.RAMW"}, "connections": {}}}}}}
    with pytest.raises(SynthError, match=r"no free flip-flop slot left for 'n\[0\]'"):
        eco_bram_registers(d)


def test_build_seeds_runs_eco(tmp_path, monkeypatch) -> None:
    """The per-seed flow: placement only, the ECO on its output, a route of the ECO's
    design; the best seed's log and configuration are kept (tools replaced by fakes that
    record their command lines)."""
    import json

    from doublesparse.scripts import synth as synth_mod

    (tmp_path / "build_top.sh").write_text(
        '"$YOSYS" -q -l top.rpt top.ys\n'
        '"$NEXTPNR_ECP5" --quiet --timing-allow-fail --log top.tim --85k --json top.json '
        '--lpf top.lpf --textcfg top.config\n'
        '"$ECPPACK" --compress --input top.config --bit top.bit\n')
    (tmp_path / "top.json").write_text(json.dumps(_design()))   # stands in for Yosys's
    fmax = {"2": 97.5, "3": 101.25}
    runs = []

    def fake_run(cmd, cwd, log, what):
        runs.append(cmd)
        if "--no-route" in cmd:
            out = cmd[cmd.index("--write") + 1]
            (cwd / out).write_text(json.dumps(_design()))
        elif "--textcfg" in cmd:
            seed = cmd[cmd.index("--seed") + 1]
            design = json.loads((cwd / cmd[cmd.index("--json") + 1]).read_text())
            locked = all(c["attributes"].get("BEL_STRENGTH") == format(6, "032b")
                         for c in design["modules"]["top"]["cells"].values())
            (cwd / cmd[cmd.index("--log") + 1]).write_text(
                f"Info: Max frequency for clock 'clk': 70.00 MHz (FAIL at 100.00 MHz)\n"
                f"Info: Max frequency for clock 'clk': {fmax[seed]} MHz (locked {locked})\n")
            (cwd / cmd[cmd.index("--textcfg") + 1]).write_text(f"config of seed {seed}\n")

    monkeypatch.setattr(synth_mod, "_check_run", fake_run)
    got, best = synth_mod._build_seeds(tmp_path, "top", [2, 3], 1, "", lambda msg: None,
                                       eco=True, clock_mhz=100.0)
    assert got == {2: 97.5, 3: 101.25} and best == 3, (got, best)
    pnr = [c for c in runs if "nextpnr" in c[0]]
    assert len(pnr) == 4, pnr
    for seed, (place, route) in zip((2, 3), (pnr[0:2], pnr[2:4]), strict=True):
        assert "--no-route" in place and "--textcfg" not in place, place
        assert place[place.index("--json") + 1] == "top.json"
        assert place[place.index("--log") + 1] == f"seed{seed}/place1.tim"
        assert route[route.index("--json") + 1] == f"seed{seed}/eco.json", route
        assert "--no-route" not in route and route[route.index("--seed") + 1] == str(seed)
    assert "(locked True)" in (tmp_path / "top.tim").read_text()
    assert (tmp_path / "top.config").read_text() == "config of seed 3\n"
    assert "ecppack" in runs[-1][0]
    moved = json.loads((tmp_path / "seed2" / "eco.json").read_text())["modules"]["top"]["cells"]
    assert moved["n[0]"]["attributes"]["NEXTPNR_BEL"] != _design()["modules"]["top"]["cells"][
        "n[0]"]["attributes"]["NEXTPNR_BEL"]
    # without the ECO: one nextpnr run per seed on Yosys's JSON
    runs.clear()
    for seed in (2, 3):
        (tmp_path / f"seed{seed}").rename(tmp_path / f"old{seed}")
    synth_mod._build_seeds(tmp_path, "top", [2], 1, "", lambda msg: None, eco=False)
    pnr = [c for c in runs if "nextpnr" in c[0]]
    assert len(pnr) == 1 and pnr[0][pnr[0].index("--json") + 1] == "top.json", pnr
    assert "(locked False)" in (tmp_path / "top.tim").read_text()


_SCRIPT = ('"$YOSYS" -q -l top.rpt top.ys\n'
           '"$NEXTPNR_ECP5" --quiet --timing-allow-fail --log top.tim --85k --json top.json '
           '--lpf top.lpf --textcfg top.config\n'
           '"$ECPPACK" --compress --input top.config --bit top.bit\n')


def test_default_flow_has_no_eco(tmp_path, monkeypatch) -> None:
    """`synth` with its defaults on the ULX3S: one nextpnr run per seed on Yosys's netlist,
    no placement-only run, no ECO design, and the report says ``eco: false``; ``eco=True``
    without the per-seed flow is refused."""
    import inspect
    import json

    from doublesparse.scripts import synth as synth_mod
    from doublesparse.sim.config import Config

    assert inspect.signature(synth_mod.synth).parameters["eco"].default is False
    assert inspect.signature(synth_mod._build_seeds).parameters["eco"].default is False

    class FakePlan:
        def extract(self, root):
            Path(root).mkdir(parents=True)
            (Path(root) / "build_top.sh").write_text(_SCRIPT)
            (Path(root) / "top.json").write_text(json.dumps(_design()))

    runs = []

    def fake_run(cmd, cwd, log, what):
        runs.append(cmd)
        if "--log" in cmd:
            (cwd / cmd[cmd.index("--log") + 1]).write_text(
                "Info: Max frequency for clock 'clk': 99.50 MHz (FAIL at 100.00 MHz)\n")
        if "--textcfg" in cmd:
            (cwd / cmd[cmd.index("--textcfg") + 1]).write_text("config\n")

    monkeypatch.setattr(synth_mod, "board_plan", lambda *a, **k: FakePlan())
    monkeypatch.setattr(synth_mod, "_check_run", fake_run)
    bd = tmp_path / "b"
    res = synth_mod.synth("ulx3s-85f", Config(), bd, seeds=[1])
    pnr = [c for c in runs if "nextpnr" in c[0]]
    assert len(pnr) == 1, pnr
    assert "--no-route" not in pnr[0] and pnr[0][pnr[0].index("--json") + 1] == "top.json"
    assert pnr[0][pnr[0].index("--seed") + 1] == "1"
    assert not list(bd.rglob("eco.json")) and not list(bd.rglob("placed1.json"))
    assert res["eco"] is False and res["seed"] == 1 and res["fmax_mhz"] == 99.5
    assert res["timing_met"] is False
    with pytest.raises(SynthError, match="per-seed flow only"):
        synth_mod.synth("icebreaker", Config(), tmp_path / "c", eco=True)


def test_cli_default_flow(tmp_path, monkeypatch) -> None:
    """`doublesparse synth` on the ULX3S: seed 1 and no ECO unless asked for (``--eco``;
    ``--no-eco`` is the default spelled out). `synth` itself is replaced: this checks the
    arguments only."""
    from doublesparse.scripts import synth as synth_mod
    from doublesparse.scripts.cli import DEFAULT_SEED, main

    assert DEFAULT_SEED == {"ulx3s-85f": 1}
    got = []

    def fake(board, cfg, build_dir, mhz, seeds=None, jobs=None, progress=None, eco=None):
        got.append((seeds, eco))
        return dict.fromkeys(("fmax_mhz", "timing_met", "luts", "ffs", "multipliers",
                              "dsp_blocks", "brams", "bitstream", "seconds"), 0)

    monkeypatch.setattr(synth_mod, "synth", fake)
    bd = str(tmp_path / "b")
    for extra in ([], ["--no-eco"], ["--eco"], ["--seed", "2", "--eco"], ["--seeds", "1,3"]):
        assert main(["synth", "--build-dir", bd, *extra]) == 0
    assert got == [([1], False), ([1], False), ([1], True), ([2], True), ([1, 3], False)], got


# -- the flow that talks: nextpnr's JSON report, live progress, tool failures, the cache ------
SAMPLES = Path(__file__).parent / "synth_samples"


def test_nextpnr_report_samples(tmp_path) -> None:
    """nextpnr's ``--report`` JSON, captured from tiny nextpnr-ice40 and nextpnr-ecp5 runs
    (a counter; an 8x8 multiply-accumulate): Fmax and constraint per clock, used and
    available per cell type, and the report's figures under the old keys."""
    from doublesparse.scripts import synth as synth_mod

    ice = synth_mod.nextpnr_report(SAMPLES / "nextpnr_ice40_report.json")
    assert ice["clocks"] == {"cd_sync.clk": {"fmax_mhz": 78.15,
                                             "target_mhz": pytest.approx(24.0004),
                                             "met": True}}
    assert ice["utilisation"]["ICESTORM_LC"] == {"used": 44, "available": 5280}
    assert ice["utilisation"]["ICESTORM_RAM"] == {"used": 0, "available": 30}
    ecp = synth_mod.nextpnr_report(SAMPLES / "nextpnr_ecp5_report.json")
    assert ecp["clocks"]["$glbnet$clk$TRELLIS_IO_IN"]["fmax_mhz"] == 120.31
    assert ecp["clocks"]["$glbnet$clk$TRELLIS_IO_IN"]["met"] is True
    assert {t: u["used"] for t, u in ecp["utilisation"].items() if u["used"]} == {
        "DCCA": 1, "MULT18X18D": 1, "TRELLIS_COMB": 22, "TRELLIS_FF": 32, "TRELLIS_IO": 33}
    assert synth_mod.nextpnr_report(tmp_path / "none.json") is None
    # _parse prefers the report over the log (whose figures here are different)
    for board, sample, want in (
            ("icebreaker", "nextpnr_ice40_report.json",
             {"fmax_mhz": 78.15, "luts": 44, "ffs": 3, "multipliers": 0, "brams": 0}),
            ("ulx3s-85f", "nextpnr_ecp5_report.json",
             {"fmax_mhz": 120.31, "luts": 22, "ffs": 32, "multipliers": 1, "brams": 0})):
        d = tmp_path / board
        d.mkdir()
        (d / "top.tim").write_text(
            "Info: Max frequency for clock 'x': 1.00 MHz (FAIL at 24.00 MHz)\n"
            "Info: \t ICESTORM_LC:   9/  5280    0%\nInfo: \t TRELLIS_COMB:   9/  83640    0%\n")
        (d / "top.rpt").write_text("2.50. Printing statistics.\n\n=== top ===\n"
                                   "        2   SB_DFF\n        1   SB_DFFE\n")
        (d / "top.nextpnr.json").write_bytes((SAMPLES / sample).read_bytes())
        got = synth_mod._parse(board, d, "top")
        assert {k: got[k] for k in want} == want, got
        assert got["figures_from"] == "nextpnr report top.nextpnr.json"
        assert got["clocks"] and got["utilisation"]
        # without the report: the log's figures, as before
        (d / "top.nextpnr.json").unlink()
        old = synth_mod._parse(board, d, "top")
        assert old["fmax_mhz"] == 1.0 and old["luts"] == 9 and "clocks" not in old


def test_progress_of_tool_lines() -> None:
    """The stage and progress read from the tools' output lines."""
    from doublesparse.scripts.synth import _progress_of

    cases = [
        ("yosys", "2.48. Executing ABC pass (technology mapping using ABC).", (None, "ABC")),
        ("yosys", "1. Executing RTLIL frontend.", (None, "RTLIL frontend")),
        ("nextpnr-ice40", "Info: Packing constants..", ("netlist packing", None)),
        ("nextpnr-ecp5", "Info: Running main analytical placer, max placement attempts per "
                         "cell = 10000.", ("placement", None)),
        ("nextpnr-ecp5", "Info: Routing..", ("routing", None)),
        ("nextpnr-ecp5", "Info:     iter=7 wires=48730 overused=1226 overuse=1250 archfail=NA",
         ("routing", "iteration 7, 1226 wires overused (overuse 1250)")),
        ("nextpnr-ice40", "Info:       3000 |     1100       1900 |  900  1000 |      4321| "
                          "     0.12       0.30|", ("routing", "3000 arcs routed, 4321 left")),
        ("nextpnr-ice40", "Info: Max frequency for clock 'clk_$glb_clk': 26.50 MHz (PASS at "
                          "24.00 MHz)", (None, "Fmax clk_$glb_clk 26.50 MHz (PASS)")),
        ("nextpnr-ice40", "Info: Checksum: 0x6d122afc", (None, None)),
        ("icepack", "Info: Routing..", (None, None)),
    ]
    for tool, line, want in cases:
        assert _progress_of(tool, line) == want, (tool, line)


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_progress_not_a_tty() -> None:
    """Without a terminal: a line per stage change, router progress at most once every
    PROGRESS_EVERY seconds, messages as they come; nothing drawn in place."""
    import io

    from doublesparse.scripts.synth import PROGRESS_EVERY, _Progress

    lines, out, clk = [], io.StringIO(), _Clock()
    p = _Progress(lines.append, stream=out, tty=False, clock=clk)
    p.stage("", "synthesis")
    p.stage("", "synthesis")          # no change, no line
    clk.t += 65
    p.message("synth: nextpnr (top.tim)")
    p.stage("", "routing")
    for i in range(1, 40):             # a router iteration a second
        clk.t += 1
        p.detail("", f"iteration {i}, {100 - i} wires overused (overuse {100 - i})")
        p.tick()
    assert lines[:3] == ["synth [0:00] synthesis", "synth: nextpnr (top.tim)",
                         "synth [1:05] routing"], lines
    assert lines[3:] == ["synth [1:35] routing (iteration 30, 70 wires overused (overuse 70))"]
    assert PROGRESS_EVERY == 30.0
    p.done("")
    clk.t += 100
    p.tick()                           # nothing running: no line
    assert len(lines) == 4 and out.getvalue() == ""


def test_progress_tty(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")    # the status line is cut to the terminal's width
    """On a terminal: one status line redrawn in place (carriage return), cleared before a
    message; stage changes are not separate lines."""
    import io

    from doublesparse.scripts.synth import _Progress

    lines, out, clk = [], io.StringIO(), _Clock()
    p = _Progress(lines.append, stream=out, tty=True, clock=clk)
    p.stage("seed 1", "placement")
    clk.t += 125
    p.stage("seed 2", "routing")
    p.detail("seed 2", "iteration 3, 12 wires overused (overuse 14)")
    p.tick()
    p.message("synth: seed 1: 101.5 MHz")
    p.done("seed 1")
    p.done("seed 2")
    assert lines == ["synth: seed 1: 101.5 MHz"]
    frames = out.getvalue().split("\r")
    assert "synth [0:00] seed 1: placement" in frames
    assert any(f.startswith("synth [2:05] seed 1: placement | seed 2: routing (iteration 3, "
                            "12 wires overused (overuse 14))") for f in frames), frames
    assert frames[-1] == ""            # the line is cleared at the end


def test_tool_failure_shows_log_tail(tmp_path) -> None:
    """A tool's nonzero exit: the error names the tool, its exit status, the log file and
    the log's last 20 lines; the whole output is in the log (the tool's own log when it
    writes one)."""
    import sys

    from doublesparse.scripts import synth as synth_mod

    talk = "import sys\nfor i in range(1, 31): print(f'line {i}', flush=True)\nsys.exit(3)\n"
    log = tmp_path / "tool.log"
    with pytest.raises(SynthError) as e:
        synth_mod._check_run([sys.executable, "-c", talk], tmp_path, log, "nextpnr")
    msg = str(e.value)
    assert msg.splitlines()[0] == f"nextpnr failed: exit status 3 (log: {log}); its last lines:"
    assert [ln.strip(" |") for ln in msg.splitlines()[1:]] == [f"line {i}"
                                                               for i in range(11, 31)]
    assert log.read_text().splitlines() == [f"line {i}" for i in range(1, 31)]
    # a tool writing its own log (-l / --log): that file's tail, quiet flags dropped
    own = ("import sys\nargs = sys.argv[1:]\nassert '-q' not in args\n"
           "open(args[args.index('--log') + 1], 'w').write('\\n'.join(f'log {i}' for i in "
           "range(25)) + '\\nERROR: no BELs left\\n')\nprint('stdout only')\nsys.exit(1)\n")
    with pytest.raises(SynthError, match=r"(?s)^yosys failed: exit status 1 \(log: .*own\.log\)"
                                         r".*log 24\n  \| ERROR: no BELs left$"):
        synth_mod._check_run([sys.executable, "-c", own, "-q", "--log", "own.log"], tmp_path,
                             tmp_path / "own.log", "yosys")
    with pytest.raises(SynthError, match=r"yosys failed: it did not start"):
        synth_mod._check_run([str(tmp_path / "missing-tool")], tmp_path, log, "yosys")


class _Tiny(Elaboratable):
    """A counter on an iCEBreaker LED: the smallest design through the whole flow."""

    def __init__(self, width: int = 20):
        self.width = width

    def elaborate(self, platform):
        m = Module()
        m.submodules.led = led = io.Buffer("o", platform.request("led_r", 0, dir="-"))
        cnt = Signal(self.width)
        m.d.sync += cnt.eq(cnt + 1)
        m.d.comb += led.o.eq(cnt[-1])
        return m


@pytest.fixture
def tiny_flow(tmp_path, monkeypatch):
    """synth() on the iCEBreaker with board_plan making the plan of :class:`_Tiny`
    (``width`` in the returned dict), the build cache in a folder of its own."""
    from doublesparse.scripts import synth as synth_mod

    monkeypatch.setenv(synth_mod.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(synth_mod.CACHE_ENV, raising=False)
    design = {"width": 20}

    def plan(board, cfg, mhz, opts, name, top="system", baud=0):
        return synth_mod._platform(board, mhz).prepare(_Tiny(design["width"]), name,
                                                       nextpnr_opts=opts, emit_src=False)

    monkeypatch.setattr(synth_mod, "board_plan", plan)
    return design


def test_tiny_build_progress_and_cache(tmp_path, monkeypatch, tiny_flow) -> None:
    """The whole flow on a tiny iCE40 design with the real tools: the figures come from
    nextpnr's report, the stages are reported; the same build again comes from the cache
    without running a tool, with the same figures and a copy of the bitstream; a changed
    design, seed, option or a bypassed cache build again."""
    import time

    from doublesparse.scripts import synth as synth_mod
    from doublesparse.sim.config import Config

    lines: list[str] = []
    t0 = time.time()
    first = synth_mod.synth("icebreaker", Config(), tmp_path / "a", 24.0, top="bridge",
                            progress=lines.append)
    built = time.time() - t0
    assert first["figures_from"] == "nextpnr report top.nextpnr.json"
    assert first["luts"] > 20 and first["ffs"] >= 20 and first["brams"] == 0
    assert first["fmax_mhz"] > 24 and first["timing_met"] is True
    assert first["clocks"]["cd_sync.clk"]["fmax_mhz"] == first["fmax_mhz"]
    assert first["utilisation"]["ICESTORM_LC"]["used"] == first["luts"]
    assert first["cache"]["hit"] is False and Path(first["bitstream"]).is_file()
    stages = [ln.split("] ", 1)[1] for ln in lines if ln.startswith("synth [")]
    assert stages[:1] == ["synthesis"] and stages[-1] == "packing bitstream", lines
    assert "placement" in stages and "routing" in stages, lines
    for f in ("top.rpt", "top.tim", "top.pack.log", "top.nextpnr.json"):
        assert (tmp_path / "a" / f).is_file(), f

    def no_tools(cmd, cwd, log, what):
        raise SynthError(f"tool ran: {what}")

    monkeypatch.setattr(synth_mod, "_check_run", no_tools)
    lines.clear()
    t0 = time.time()
    again = synth_mod.synth("icebreaker", Config(), tmp_path / "b", 24.0, top="bridge",
                            progress=lines.append)
    cached = time.time() - t0
    key = first["cache"]["key"]
    assert again["cache"]["hit"] is True and again["cache"]["key"] == key
    assert any(f"from the build cache (key {key}" in ln for ln in lines), lines
    for k in ("fmax_mhz", "luts", "ffs", "multipliers", "brams", "clocks", "utilisation",
              "seconds", "timing_met"):
        assert again[k] == first[k], k
    assert again["bitstream"] == str(tmp_path / "b" / "top.bin")
    assert Path(again["bitstream"]).read_bytes() == Path(first["bitstream"]).read_bytes()
    assert json.loads((tmp_path / "b" / "report.json").read_text())["cache"]["hit"] is True
    assert cached < 10 and cached < built, (cached, built)
    # what changes the build misses the cache (and so runs the tools)
    for change in ({"nextpnr_opts": "--seed 3"}, {"clock_mhz": 30.0}, {"design": 21},
                   {"env": "0"}):
        kw = {"clock_mhz": 24.0, **{k: v for k, v in change.items() if k not in
                                     ("design", "env")}}
        tiny_flow["width"] = change.get("design", 20)
        if "env" in change:
            monkeypatch.setenv(synth_mod.CACHE_ENV, change["env"])
        with pytest.raises(SynthError, match="tool ran: yosys"):
            synth_mod.synth("icebreaker", Config(), tmp_path / "c", top="bridge", **kw)
    monkeypatch.delenv(synth_mod.CACHE_ENV)
    tiny_flow["width"] = 20
    with pytest.raises(SynthError, match="tool ran: yosys"):   # another engine config
        synth_mod.synth("icebreaker", Config(pes=2), tmp_path / "c", 24.0, top="bridge")
    with pytest.raises(SynthError, match="tool ran: yosys"):
        synth_mod.synth("icebreaker", Config(), tmp_path / "c", 24.0, top="bridge",
                        cache=False)
    assert synth_mod.synth("icebreaker", Config(), tmp_path / "d", 24.0,
                           top="bridge")["cache"]["hit"] is True


def test_tiny_build_tool_failure(tmp_path, tiny_flow) -> None:
    """nextpnr refusing its options: the error names nextpnr, its log and the log's tail;
    nothing is cached."""
    from doublesparse.scripts import synth as synth_mod
    from doublesparse.sim.config import Config

    with pytest.raises(SynthError) as e:
        synth_mod.synth("icebreaker", Config(), tmp_path / "a", 24.0, top="bridge",
                        nextpnr_opts="--no-such-option")
    msg = str(e.value)
    head, *tail = msg.splitlines()
    assert re.match(r"nextpnr failed: exit status \d+ \(log: .*top\.tim\); its last lines:$",
                    head), msg
    assert tail and all(ln.startswith("  | ") for ln in tail) and len(tail) <= 20, msg
    assert "no-such-option" in msg or "unrecognised" in msg.lower(), msg
    assert not list((tmp_path / "cache").glob("*/report.json"))


def test_cache_index_skips_the_plan(tmp_path, monkeypatch) -> None:
    """The sources digest (package sources, options, versions) points at the plan key of
    an earlier build, so a hit does not make the build plan; without the entry the plan is
    made; a replaced board_plan turns the shortcut off."""
    from doublesparse.scripts import synth as synth_mod
    from doublesparse.sim.config import Config

    monkeypatch.setenv(synth_mod.CACHE_DIR_ENV, str(tmp_path / "cache"))
    opts = {"board": "ulx3s-85f", "seeds": [1]}
    skey = synth_mod._sources_key(opts)
    assert re.fullmatch(r"[0-9a-f]{32}", skey)
    assert synth_mod._sources_key({**opts, "seeds": [2]}) != skey
    key = "0123456789abcdef" * 2
    entry = tmp_path / "cache" / key
    entry.mkdir(parents=True)
    (entry / "top.bit").write_bytes(b"bits")
    (entry / "report.json").write_text(json.dumps({"fmax_mhz": 101.5, "seconds": 1800.0,
                                                   "bitstream": "/elsewhere/top.bit"}))
    synth_mod._index_put("f" * 32, key)
    made = []

    def plan(*a, **k):
        made.append(a)
        raise RuntimeError("plan made")

    monkeypatch.setattr(synth_mod, "_sources_key", lambda options: "f" * 32)
    monkeypatch.setattr(synth_mod, "board_plan", plan)
    lines: list[str] = []
    res = synth_mod.synth("ulx3s-85f", Config(), tmp_path / "b", seeds=[1],
                          progress=lines.append)
    assert not made and res["fmax_mhz"] == 101.5 and res["cache"]["key"] == key
    assert (tmp_path / "b" / "top.bit").read_bytes() == b"bits"
    assert res["bitstream"] == str(tmp_path / "b" / "top.bit") and res["cache"]["hit"]
    assert any("from the build cache" in ln for ln in lines), lines
    (entry / "report.json").unlink()
    with pytest.raises(SynthError, match="plan made"):
        synth_mod.synth("ulx3s-85f", Config(), tmp_path / "b", seeds=[1])
    assert len(made) == 1
    monkeypatch.undo()
    monkeypatch.setattr(synth_mod, "board_plan", plan)
    assert synth_mod._sources_key(opts) is None
