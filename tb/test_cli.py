"""The ``doublesparse`` command line: encode / decode round trips, decode --rtl on good and
corrupted images under each simulator, bad input errors, Verilog that Verilator lints, and
dot products through the PE."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from doublesparse.scripts.cli import main
from doublesparse.tb.runner import sim_env
from doublesparse.tb.stimulus import FORMATS, random_tensor

SIMS = [s for s in os.environ.get("DS_SIMS", "verilator,icarus").split(",") if s]
SEED = int(os.environ.get("DS_SEED", "5"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_decode_round_trip(tmp_path: Path, fmt: str, capsys) -> None:
    rng = np.random.default_rng(SEED)
    x = random_tensor(rng, (37, 3, 5), 0.3)
    np.save(tmp_path / "x.npy", x)
    extra = ["--prune"] if fmt == "nm" else []
    assert main(["encode", "--format", fmt, "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "x.bin"), *extra]) == 0
    assert "ratio" in capsys.readouterr().out
    assert main(["decode", "--input", str(tmp_path / "x.bin"),
                 "--out", str(tmp_path / "y.npy")]) == 0
    y = np.load(tmp_path / "y.npy")
    if fmt == "nm":
        from doublesparse.sim.formats import prune_nm
        x = prune_nm(x)
    assert y.dtype == np.int8 and np.array_equal(x, y)


def test_encode_errors(tmp_path: Path, capsys) -> None:
    x = np.ones((8, 4), np.int8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "f.npy", x.astype(np.float32))
    out = str(tmp_path / "o.bin")
    assert main(["encode", "--format", "nm", "--input", str(tmp_path / "x.npy"),
                 "--out", out]) == 2
    assert "not 2:4 sparse" in capsys.readouterr().err
    assert main(["encode", "--format", "bitmap", "--input", str(tmp_path / "f.npy"),
                 "--out", out]) == 2
    assert "float32" in capsys.readouterr().err
    assert main(["encode", "--format", "bitmap", "--input", str(tmp_path / "x.npy"),
                 "--out", out, "-J", "12"]) == 2
    assert "'join_width' = 12" in capsys.readouterr().err


def test_decode_software_reports_malformed(tmp_path: Path, capsys) -> None:
    x = np.arange(-20, 20, dtype=np.int8).reshape(8, 5)
    np.save(tmp_path / "x.npy", x)
    main(["encode", "--format", "bitmap", "--input", str(tmp_path / "x.npy"),
          "--out", str(tmp_path / "x.bin")])
    data = (tmp_path / "x.bin").read_bytes()
    (tmp_path / "t.bin").write_bytes(data[:-8])
    assert main(["decode", "--input", str(tmp_path / "t.bin"),
                 "--out", str(tmp_path / "y.npy")]) == 3
    err = capsys.readouterr().err
    assert "TRUNCATED" in err and "meaning" in err


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_decode_rtl(tmp_path: Path, sim: str, fmt: str, capsys) -> None:
    rng = np.random.default_rng(SEED + 1)
    x = random_tensor(rng, (21, 4), 0.4)
    np.save(tmp_path / "x.npy", x)
    main(["encode", "--format", fmt, "--input", str(tmp_path / "x.npy"),
          "--out", str(tmp_path / "x.bin"), "--prune"])
    assert main(["decode", "--input", str(tmp_path / "x.bin"), "--out",
                 str(tmp_path / "y.npy"), "--rtl", "--sim", sim]) == 0
    y = np.load(tmp_path / "y.npy")
    from doublesparse.sim.formats import prune_nm
    assert np.array_equal(prune_nm(x) if fmt == "nm" else x, y)
    # drop the image's last word: a named error (TRUNCATED), exit 3, no output written
    words = np.frombuffer((tmp_path / "x.bin").read_bytes(), "<u4")[:-1]
    (tmp_path / "bad.bin").write_bytes(words.tobytes())
    capsys.readouterr()
    assert main(["decode", "--input", str(tmp_path / "bad.bin"), "--out",
                 str(tmp_path / "z.npy"), "--rtl", "--sim", sim]) == 3
    err = capsys.readouterr().err
    assert "RTL decoder reported TRUNCATED" in err and "meaning:" in err
    assert not (tmp_path / "z.npy").exists()


@pytest.mark.parametrize("block", ["decoder", "pe"])
def test_verilog_lints(tmp_path: Path, block: str) -> None:
    out = tmp_path / f"{block}.v"
    assert main(["verilog", "--block", block, "--out", str(out)]) == 0
    env = dict(os.environ, **sim_env("verilator"))
    r = subprocess.run(["verilator", "--lint-only", str(out)], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dot_through_pe(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(SEED)
    w = random_tensor(rng, (6, 200), 0.3)
    a = random_tensor(rng, (200,), 0.5)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "a.npy", a)
    assert main(["dot", "--weights", str(tmp_path / "w.npy"), "--acts",
                 str(tmp_path / "a.npy"), "--stall", "--sim", SIMS[0],
                 "--out", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").tolist() == (w.astype(np.int64) @ a).tolist()


def test_encode_narrow_j_lowers_multipliers(tmp_path: Path) -> None:
    x = random_tensor(np.random.default_rng(SEED), (30, 7), 0.5)
    np.save(tmp_path / "x.npy", x)
    assert main(["encode", "--format", "bitmap", "-J", "8", "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "x.bin")]) == 0
    assert main(["decode", "--input", str(tmp_path / "x.bin"),
                 "--out", str(tmp_path / "y.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), x)


ENGINE_CFG = "act_mem_chunks=256,wgt_mem_chunks=256,out_mem_words=1024,max_filters=32"


@pytest.mark.parametrize("encoding", ["double", "weight-only", "dense"])
def test_run_layer(tmp_path: Path, encoding: str, capsys) -> None:
    """run-layer --raw against an independent einsum convolution; the stats JSON has the
    issue's fields; the MAC counter matches the work the encoding implies."""
    import json

    rng = np.random.default_rng(SEED)
    w = random_tensor(rng, (5, 19, 3, 3), 0.3)
    a = random_tensor(rng, (19, 6, 5), 0.5)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "a.npy", a)
    rc = main(["run-layer", "--weights", str(tmp_path / "w.npy"), "--acts",
               str(tmp_path / "a.npy"), "--pad", "1", "--raw", "--encoding", encoding,
               "--sim", SIMS[0], "--config", ENGINE_CFG, "--out", str(tmp_path / "y.npy"),
               "--stats", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    ap = np.pad(a.astype(np.int64), ((0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(ap, (3, 3), axis=(1, 2))  # C,Ho,Wo,R,S
    ref = np.einsum("kcrs,cyxrs->kyx", w.astype(np.int64), win)
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.int32 and np.array_equal(y, ref), (y, ref)
    st = json.loads((tmp_path / "s.json").read_text())
    for key in ("cycles", "effectual_macs", "dense_macs", "multipliers", "ideal_cycles",
                "dense_cycles", "utilization", "speedup_vs_dense", "per_pe_busy",
                "predicted_cycles"):
        assert key in st, key
    ones = np.ones_like(ap)
    ones[:, 0, :] = ones[:, -1, :] = 0
    ones[:, :, 0] = ones[:, :, -1] = 0          # padding taps are never fetched
    mw = (w != 0) if encoding != "dense" else np.ones_like(w, bool)
    ma = np.pad(a != 0, ((0, 0), (1, 1), (1, 1))) if encoding == "double" else ones
    mwin = np.lib.stride_tricks.sliding_window_view(ma.astype(np.int64), (3, 3), axis=(1, 2))
    expect = int(np.einsum("kcrs,cyxrs->", mw.astype(np.int64), mwin))
    print(encoding, "macs", st["effectual_macs"], "expected", expect, "cycles", st["cycles"])
    assert st["effectual_macs"] == expect
    assert st["encoding"]["activations"] == ("sparse" if encoding == "double" else "dense")


def test_run_layer_bad_input(tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "w.npy", np.ones((2, 3, 3, 3), np.int8))
    np.save(tmp_path / "a.npy", np.ones((4, 5, 5), np.int8))
    rc = main(["run-layer", "--weights", str(tmp_path / "w.npy"), "--acts",
               str(tmp_path / "a.npy"), "--out", str(tmp_path / "y.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "C = 3" in err and "4" in err, err


def test_synth_bad_seeds(tmp_path: Path, capsys) -> None:
    """Bad seed arguments are refused before any tool runs (nothing is built)."""
    from doublesparse.scripts.synth import SynthError, synth
    from doublesparse.sim.config import Config

    bd = tmp_path / "synth"
    assert main(["synth", "--seed", "1", "--seeds", "1,2", "--build-dir", str(bd)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["synth", "--seeds", "1,x", "--build-dir", str(bd)]) == 2
    assert "'1,x'" in capsys.readouterr().err
    for seeds, board, msg in (([1, 1], "ulx3s-85f", "[1, 1]"), ([], "ulx3s-85f", "[]"),
                              ([1], "icebreaker", "icebreaker")):
        with pytest.raises(SynthError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            synth(board, Config(), bd, seeds=seeds)
    assert not bd.exists()


def test_synth_block_tool_failure(tmp_path: Path, monkeypatch) -> None:
    """A tool that fails in the out-of-context block flow gives a SynthError naming the
    tool and its log, not a bare CalledProcessError."""
    from doublesparse.scripts import synth as synth_mod

    monkeypatch.setattr(synth_mod, "_tool", lambda name: "false")
    with pytest.raises(synth_mod.SynthError, match=r"yosys failed: .*log: .*yosys\.log"):
        synth_mod.synth_block("pe", build_dir=tmp_path / "blk")


def test_board_netlist_location_independent(tmp_path: Path) -> None:
    """The board build's files do not depend on where the package lies: a copy of the
    package elsewhere gives byte-identical RTLIL, Yosys script and constraints (source paths
    in the netlist would reach Yosys's cell names and change nextpnr's placement)."""
    import shutil
    import sys

    import doublesparse.scripts.synth as synth_mod
    from doublesparse.sim.config import Config

    repo = Path(synth_mod.__file__).resolve().parents[1]
    copy = tmp_path / "elsewhere" / "doublesparse"
    for sub in ("rtl", "sim", "scripts", "tb"):
        shutil.copytree(repo / sub, copy / sub, ignore=shutil.ignore_patterns("__pycache__"))
    names = ("top.il", "top.ys", "top.lpf")
    code = ("import json, doublesparse.scripts.synth as s\n"
            "from doublesparse.sim.config import Config\n"
            f"assert s.__file__.startswith({str(copy)!r}), s.__file__\n"
            "files = s.board_plan('ulx3s-85f', Config(pes=2)).files\n"
            f"print(json.dumps({{n: files[n] for n in {names!r}}}))\n")
    env = dict(os.environ, PYTHONPATH=str(copy.parent))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    files = synth_mod.board_plan("ulx3s-85f", Config(pes=2)).files
    there, here = json.loads(run.stdout), {n: files[n] for n in names}
    for n in names:
        assert str(repo) not in here[n], n
        if there[n] != here[n]:
            pairs = zip(here[n], there[n], strict=False)
            diff = next((i for i, (a, b) in enumerate(pairs) if a != b),
                        min(len(here[n]), len(there[n])))
            raise AssertionError(f"{n} differs at character {diff}: here "
                                 f"{here[n][diff - 80:diff + 80]!r}, elsewhere "
                                 f"{there[n][diff - 80:diff + 80]!r}")
