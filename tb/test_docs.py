"""Generated documentation (``scripts/docgen.py``): every committed section and generated
file equals what its render gives from the committed data, and the mechanism rewrites
only what lies between its markers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doublesparse.scripts import docgen
from doublesparse.scripts.cli import main


def test_committed_sections_are_current() -> None:
    """Fails when a table differs from its JSON: run `doublesparse docs` and commit."""
    d = docgen.diffs()
    for label, diff in d.items():
        lines = diff.splitlines()
        print(f"stale: {label}\n" + "\n".join(lines[:30])
              + (f"\n... ({len(lines) - 30} more lines)" if len(lines) > 30 else ""))
    assert not d, f"stale generated docs: {', '.join(d)} (run `doublesparse docs`)"


def test_every_section_has_markers_once() -> None:
    for s in docgen.SECTIONS:
        if isinstance(s, docgen.Section):
            text = (docgen.REPO / s.path).read_text()
            assert text.count(docgen.begin_marker(s.name)) == 1, s.label
            assert text.count(docgen.end_marker(s.name)) == 1, s.label
    labels = [s.label for s in docgen.SECTIONS]
    assert len(labels) == len(set(labels))


def _fake(tmp_path: Path) -> list:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# Page\n\nintro kept\n\n<!-- a:begin (old wording) -->\nold a\n<!-- a:end -->\n\n"
        "middle kept\n\n<!-- b:begin -->\n<!-- b:end -->\nend kept\n")
    (tmp_path / "value.txt").write_text("1")

    def render_a(root: Path) -> str:
        return f"A = {(root / 'value.txt').read_text()}"

    return [docgen.Section("docs/page.md", "a", render_a),
            docgen.Section("docs/page.md", "b", lambda: "B"),
            docgen.GeneratedFile("gen/out.h", lambda root: "#define X 1")]


def test_update_and_stale(tmp_path: Path) -> None:
    secs = _fake(tmp_path)
    assert docgen.stale(tmp_path, secs) == ["docs/page.md#a", "docs/page.md#b", "gen/out.h"]
    assert docgen.update(tmp_path, secs) == ["docs/page.md#a", "docs/page.md#b", "gen/out.h"]
    text = (tmp_path / "docs" / "page.md").read_text()
    assert text == ("# Page\n\nintro kept\n\n" + docgen.block("a", "A = 1") + "\n\nmiddle kept"
                    "\n\n" + docgen.block("b", "B") + "\nend kept\n")
    assert (tmp_path / "gen" / "out.h").read_text() == "#define X 1\n"
    assert docgen.stale(tmp_path, secs) == [] and docgen.update(tmp_path, secs) == []
    # a changed input makes exactly its section stale, with a diff naming it
    (tmp_path / "value.txt").write_text("2")
    d = docgen.diffs(tmp_path, secs)
    assert list(d) == ["docs/page.md#a"] and "-A = 1" in d["docs/page.md#a"] \
        and "+A = 2" in d["docs/page.md#a"]
    # a hand edit inside a section is stale too
    docgen.update(tmp_path, secs)
    p = tmp_path / "docs" / "page.md"
    p.write_text(p.read_text().replace("\nB\n", "\nB edited\n"))
    assert docgen.stale(tmp_path, secs) == ["docs/page.md#b"]


def test_missing_markers(tmp_path: Path) -> None:
    secs = _fake(tmp_path)
    (tmp_path / "docs" / "page.md").write_text("# Page\n")
    with pytest.raises(docgen.DocgenError, match="no markers"):
        docgen.stale(tmp_path, secs)
    p = tmp_path / "docs" / "new.md"
    assert docgen.write_section(p, "s", "body", heading="## S")
    assert docgen.block("s", "body") in p.read_text() and "## S" in p.read_text()
    assert not docgen.write_section(p, "s", "body")


def test_synth_section_without_and_with_report(tmp_path: Path) -> None:
    text = docgen.render_synth(tmp_path)
    assert "No synthesis report is committed yet" in text and docgen.SYNTH_CMD in text
    rep = {"fmax_mhz": 101.5, "luts": 30000, "ffs": 21000, "multipliers": 8,
           "dsp_blocks": 31, "multipliers_config": 8, "brams": 99, "seconds": 1200.4,
           "seed": 3, "eco": True, "seeds_fmax": {"3": 101.5}, "timing_met": True,
           "target_mhz": 100.0, "board": "ulx3s-85f",
           "config": {"pes": 4, "multipliers": 2, "join_width": 16, "queue_depth": 8}}
    (tmp_path / docgen.SYNTH_JSON).parent.mkdir(parents=True)
    (tmp_path / docgen.SYNTH_JSON).write_text(json.dumps(rep))
    text = docgen.render_synth(tmp_path)
    for s in ("**101.50 MHz**", "30,000", "21,000", "31, of which 8", "| 99 |", "| 3 |",
              "1,200 s", "| timing met | yes |"):
        assert s in text, s


def test_engine_table_matches_json() -> None:
    rows = json.loads((docgen.REPO / "docs/results/engine.json").read_text())
    text = (docgen.REPO / "docs/performance.md").read_text()
    for r in rows:
        assert f"| {r['cycles']} | {r['predicted_cycles']} |" in text, r["name"]


def test_cli_check(capsys) -> None:
    assert main(["docs", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_cli_check_stale_and_update(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(docgen, "SECTIONS", _fake(tmp_path))
    assert main(["docs", "--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "stale: docs/page.md#a" in out and "+A = 1" in out and "stale: gen/out.h" in out
    assert main(["docs", "--root", str(tmp_path)]) == 0
    assert "rewrote docs/page.md#a" in capsys.readouterr().out
    assert main(["docs", "--check", "--root", str(tmp_path)]) == 0
