"""The structure rules of the code base, measured from the source: small components, one
definition per contract, layering (rtl imports neither tb nor scripts; nothing outside tb
imports a test module), and no history narrated in the sources and docs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RTL = sorted((ROOT / "rtl").rglob("*.py"))
MAX_ELABORATE = 150
MAX_ENGINE_TOP = 200


def _functions(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            yield node


def test_elaborate_sizes() -> None:
    sizes = {}
    for path in RTL:
        for fn in _functions(path):
            if fn.name == "elaborate":
                sizes[f"{path.relative_to(ROOT)}:{fn.lineno}"] = fn.end_lineno - fn.lineno + 1
    assert sizes, "no elaborate() found"
    big = {k: v for k, v in sizes.items() if v > MAX_ELABORATE}
    print("largest elaborate():", sorted(sizes.items(), key=lambda kv: -kv[1])[:5])
    assert not big, f"elaborate() over {MAX_ELABORATE} lines: {big}"
    top = len((ROOT / "rtl" / "engine" / "engine.py").read_text().splitlines())
    assert top <= MAX_ENGINE_TOP, f"rtl/engine/engine.py has {top} lines"


def test_no_locals_passing() -> None:
    bad = [str(p.relative_to(ROOT)) for p in RTL if "locals()" in p.read_text()]
    assert not bad, f"locals() in {bad}"


def test_chunk_layout_defined_once() -> None:
    """The chunk's bit layout (mask, then J value bytes) is written only in rtl/chunk.py:
    nobody else shifts values by ``J + 8 * lane`` or builds the mask / values struct."""
    pattern = re.compile(r"J \+ 8 \*|9 \* J\)|\"mask\": *(join_width|J)\b")
    hits = []
    for folder in ("rtl", "sim", "tb", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            # test_chunk.py spells the layout as the independent reference of rtl/chunk.py
            if path.name in ("chunk.py", "test_chunk.py", "test_structure.py"):
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and not line.lstrip().startswith("#"):
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "chunk layout written outside rtl/chunk.py:\n" + "\n".join(hits)


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            out.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


@pytest.mark.parametrize("folder,forbidden", [("rtl", ("tb", "scripts")),
                                               ("sim", ("tb", "scripts"))])
def test_layering(folder, forbidden) -> None:
    bad = []
    for path in (ROOT / folder).rglob("*.py"):
        for mod in _imports(path):
            name = mod.lstrip(".")
            if any(name == f or name.startswith(f + ".") or f"doublesparse.{f}" in name
                   for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_no_test_module_imported_outside_tb() -> None:
    bad = []
    for folder in ("rtl", "sim", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            for mod in _imports(path):
                if re.search(r"(^|\.)test_\w+$", mod):
                    bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_no_history_in_sources_and_docs() -> None:
    pattern = re.compile(r"\bsession \d|\bsessions \d|\breverted\b|\bsince session\b",
                         re.IGNORECASE)
    hits = []
    for folder in ("rtl", "sim", "scripts", "docs"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".md", ".sh", ".h"):
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:90]}")
    assert not hits, "history narrated:\n" + "\n".join(hits)
