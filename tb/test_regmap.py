"""The register map (rtl/engine/regmap.py) and the limits Config derives from it: the
generated C header compiles and gives the same numbers as the Python map, no two
registers overlap at the largest PE count, Config refuses what the RTL cannot build, and
the engine elaborates at the lower limits of every field."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from amaranth.back import rtlil

from doublesparse.rtl.engine import Engine
from doublesparse.rtl.engine.regmap import (
    CSR_SPAN,
    REGIONS,
    REGISTERS,
    EngineError,
    c_header,
    max_pes,
)
from doublesparse.sim.config import Config, ConfigError


def test_c_header_matches_python(tmp_path) -> None:
    cc = shutil.which("gcc") or shutil.which("g++")
    assert cc, "no C compiler (bash scripts/setup.sh installs g++)"
    (tmp_path / "doublesparse_engine.h").write_text(c_header())
    names = ([f"DS_REG_{r.name}" for r in REGISTERS] + [f"DS_REGION_{g.name}" for g in REGIONS]
             + [f"DS_ERR_{e.name}" for e in EngineError]
             + [f"DS_{r.name}_{f.name.upper()}_MASK" for r in REGISTERS for f in r.fields])
    body = "\n".join(f'    printf("{n} %lu\\n", (unsigned long)({n}));' for n in names)
    (tmp_path / "t.c").write_text('#include <stdio.h>\n#include "doublesparse_engine.h"\n'
                                  f"int main(void) {{\n{body}\n    return 0;\n}}\n")
    subprocess.run([cc, "-x", "c", "-Wall", "-Werror", "-o", str(tmp_path / "t"),
                    str(tmp_path / "t.c")], check=True, cwd=tmp_path)
    out = subprocess.run([str(tmp_path / "t")], check=True, capture_output=True,
                         text=True).stdout
    got = dict(line.split() for line in out.splitlines())
    want = {f"DS_REG_{r.name}": r.addr for r in REGISTERS}
    want |= {f"DS_REGION_{g.name}": g.base for g in REGIONS}
    want |= {f"DS_ERR_{e.name}": e.value for e in EngineError}
    want |= {f"DS_{r.name}_{f.name.upper()}_MASK": ((1 << f.width) - 1) << f.lsb
             for r in REGISTERS for f in r.fields}
    for n, v in want.items():
        assert int(got[n]) == v, f"{n}: C header {got[n]}, regmap {v}"


def test_registers_do_not_overlap_at_max_pes() -> None:
    P = max_pes()
    assert P >= 4
    owner: dict[int, str] = {}
    for r in REGISTERS:
        for a in ([r.addr + p for p in range(P)] if r.per_pe else [r.addr]):
            assert a < CSR_SPAN, f"{r.name} at {a:#x} beyond the CSR span"
            assert a not in owner, f"{r.name} and {owner[a]} both at {a:#x}"
            owner[a] = r.name
    bases = [g.base + p for g in REGIONS for p in (range(P) if g.per_pe else [0])]
    assert len(bases) == len(set(bases)) and max(bases) < 256


def test_config_refuses_what_the_rtl_cannot_build() -> None:
    Config(pes=max_pes())
    with pytest.raises(ConfigError, match=r"'pes' = 33.*at most 32"):
        Config(pes=max_pes() + 1)
    with pytest.raises(ConfigError, match="'acc_width' = 16"):
        Config(acc_width=16, max_reduction=1)
    with pytest.raises(ConfigError, match="'act_mem_chunks'"):
        Config(join_width=32, nm_m=4, act_mem_chunks=1 << 21)


def test_engine_elaborates_at_the_lower_limits() -> None:
    cfg = Config(pes=1, multipliers=1, join_width=8, queue_depth=1, act_mem_chunks=16,
                 wgt_mem_chunks=16, out_mem_words=16, max_filters=1, max_reduction=1,
                 acc_width=17)
    text = rtlil.convert(Engine(cfg), name="engine", emit_src=False)
    assert "module \\engine" in text
