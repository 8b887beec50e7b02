"""`eco_bram_registers`: the ECO between nextpnr's placement and routing, checked on a
small hand-made placed design (no tool runs). Legality is checked here with rules written
out again, not with the module's own checker. The ECO is opt-in: the default flow (the
`synth` function and `doublesparse synth` without options) has none, and its default
placement seed is 1 (tools and the netlist replaced by fakes, so no test here runs
Yosys or nextpnr)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
