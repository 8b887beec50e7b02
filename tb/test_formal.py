"""The formal properties of ``tb/formal/`` (``docs/verification.md``) through SymbiYosys,
one test per property: its proof (k-induction or bounded), its cover (reached: the proof
checked something) and each of its mutations (must FAIL with a counterexample). The work
folders stay under ``build/prove-tests/<property>/`` for the traces."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from doublesparse.scripts.prove import run_sby, runs_for
from doublesparse.tb.formal import PROPERTIES, Property
from doublesparse.tb.formal.pe_window import WindowStepStrict

BUILD = Path(__file__).resolve().parents[1] / "build" / "prove-tests"
# SymbiYosys runs of one property at a time (its proof, cover and mutations)
JOBS = 2


def _check(runs) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=JOBS) as ex:
        results = list(ex.map(lambda r: run_sby(r, BUILD), runs))
    bad = []
    for r in results:
        print(f"{r.run.prop.name} {r.run.kind}: {r.status} ({r.seconds:.1f} s)")
        if not r.ok:
            where = r.trace or (r.workdir / "logfile.txt")
            bad.append(f"{r.run.kind}: {r.status}, expected {r.run.expect} ({where})\n    "
                       + "\n    ".join(r.log_tail[-4:]))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("prop", PROPERTIES, ids=[p.name for p in PROPERTIES])
def test_property(prop: Property) -> None:
    _check(runs_for(prop, mutations=True))


def test_window_step_strict_rule_fails() -> None:
    """The window's select step changes while stalled when a pair arrives: the strict
    stream rule has a counterexample (a finding, by design: ``tb/formal/pe_window.py``)."""
    prop = next(p for p in PROPERTIES if p.name == "stream.pe.window")
    strict = Property("finding.pe.window.strict", prop.block, "the strict stream rule",
                      WindowStepStrict, "bmc", prop.cover_depth, prop.cover_depth)
    from doublesparse.scripts.prove import Run

    r = run_sby(Run(strict, "proof"), BUILD)
    assert r.status == "FAIL", f"{r.status}: the strict rule now holds? {r.workdir}"
