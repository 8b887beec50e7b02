"""Issue 22, the command line: every bad input, option or output path ends the command with
exit status 2 and one line on stderr naming the input and the problem (no traceback),
before any encoding, simulation or synthesis, and leaves no output file behind. No test
here builds or runs a simulator: the runners are replaced by ones that fail the test."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from doublesparse.scripts import bench as bench_mod
from doublesparse.scripts import cli
from doublesparse.scripts import layer as layer_mod
from doublesparse.scripts import synth as synth_mod
from doublesparse.scripts.cli import main
from doublesparse.sim.config import Config, ConfigError
from doublesparse.sim.conv import LayerError
from doublesparse.tb import runner


@pytest.fixture(autouse=True)
def no_simulation(monkeypatch):
    """Any simulator run, engine job encoding or synthesis fails the test."""
    def boom(*a, **k):
        raise AssertionError("the refusal must come before any encoding or simulation")

    for mod, name in ((runner, "run_decoder_rtl"), (runner, "run_engine_rtl"),
                      (runner, "run_pe_rtl"), (bench_mod, "pe_dot_rtl"),
                      (layer_mod, "make_job"), (synth_mod, "board_plan")):
        if hasattr(mod, name):
            monkeypatch.setattr(mod, name, boom)


def refused(capsys, argv: list[str], *needles: str, limit_s: float = 3.0) -> str:
    """Run the CLI; it must exit 2 at once with one stderr line holding every needle."""
    t0 = time.time()
    rc = main([str(a) for a in argv])
    took = time.time() - t0
    cap = capsys.readouterr()
    lines = cap.err.splitlines()
    assert rc == 2, (rc, cap.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), cap.err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    assert took < limit_s, f"took {took:.1f} s to refuse"
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    np.save(tmp_path / "x.npy", np.arange(-20, 20, dtype=np.int8).reshape(8, 5))
    np.savez(tmp_path / "z.npz", a=np.ones(3, np.int8))
    np.save(tmp_path / "w.npy", np.ones((2, 3, 3, 3), np.int8))
    np.save(tmp_path / "a.npy", np.ones((3, 5, 5), np.int8))
    np.save(tmp_path / "v5.npy", np.ones(5, np.int8))
    np.save(tmp_path / "v6.npy", np.ones(6, np.int8))
    np.save(tmp_path / "e.npy", np.zeros(0, np.int8))
    assert main(["encode", "--format", "bitmap", "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "x.img")]) == 0
    return tmp_path


def _before(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


# -- 1. inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["encode", "--format", "bitmap", "--input", "{z}", "--out", "{d}/o.img"],
    ["run-layer", "--weights", "{z}", "--acts", "{d}/a.npy", "--out", "{d}/y.npy"],
    ["dot", "--weights", "{d}/v5.npy", "--acts", "{z}"],
])
def test_npz_where_npy_expected(files: Path, capsys, argv: list[str]) -> None:
    z = files / "z.npz"
    argv = [a.format(z=z, d=files) for a in argv]
    refused(capsys, argv, str(z), ".npz archive", "expected one array in a .npy file")
    assert not (files / "o.img").exists() and not (files / "y.npy").exists()


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "folder"])
def test_unreadable_input(files: Path, capsys, kind: str) -> None:
    p = files / f"in_{kind}.npy"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("1 2 3\n")
    elif kind == "folder":
        p.mkdir()
    why = {"missing": "No such file", "empty": "not a .npy array", "text": "not a .npy array",
           "folder": "Is a directory"}[kind]
    refused(capsys, ["encode", "--format", "rle", "--input", p, "--out", files / "o.img"],
            str(p), why)
    assert not (files / "o.img").exists()


# -- 2. output paths -----------------------------------------------------------------------
OUT_CMDS = {
    "encode": ["encode", "--format", "bitmap", "--input", "{d}/x.npy", "--out", "{o}"],
    "decode": ["decode", "--input", "{d}/x.img", "--out", "{o}.npy"],
    "decode-rtl": ["decode", "--rtl", "--input", "{d}/x.img", "--out", "{o}.npy"],
    "verilog": ["verilog", "--block", "pe", "--out", "{o}"],
    "run-layer": ["run-layer", "--weights", "{d}/w.npy", "--acts", "{d}/a.npy",
                  "--out", "{o}.npy"],
    "run-layer-stats": ["run-layer", "--weights", "{d}/w.npy", "--acts", "{d}/a.npy",
                        "--out", "{d}/y.npy", "--stats", "{o}"],
    "dot-out": ["dot", "--weights", "{d}/v5.npy", "--acts", "{d}/v5.npy", "--out", "{o}.npy"],
    "dot-json": ["dot", "--weights", "{d}/v5.npy", "--acts", "{d}/v5.npy", "--json", "{o}"],
    "bench-json": ["bench", "pe", "--json", "{o}"],
    "study-json": ["study", "--json", "{o}"],
    "synth-json": ["synth", "--build-dir", "{d}/b", "--json", "{o}"],
    "demo-json": ["demo", "--json", "{o}"],
    "train-digits": ["train-digits", "--out", "{o}.npz"],
}


@pytest.mark.parametrize("where", ["missing-folder", "is-folder", "parent-is-file"])
@pytest.mark.parametrize("cmd", sorted(OUT_CMDS))
def test_bad_output_path(files: Path, capsys, cmd: str, where: str) -> None:
    o = {"missing-folder": files / "nonexist" / "dir" / "o",
         "is-folder": files / "outdir",
         "parent-is-file": files / "x.img" / "o"}[where]
    if where == "is-folder":
        for suffix in ("", ".npy", ".npz"):
            (files / f"outdir{suffix}").mkdir()
    why = {"missing-folder": "does not exist", "is-folder": "is a directory",
           "parent-is-file": "is not a folder"}[where]
    before = _before(files)
    argv = [a.format(d=files, o=o) for a in OUT_CMDS[cmd]]
    refused(capsys, argv, str(o), why)
    assert _before(files) == before
    assert not (files / "nonexist").exists() and not (files / "b").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_disk_full(files: Path, capsys) -> None:
    refused(capsys, ["encode", "--format", "bitmap", "--input", files / "x.npy",
                     "--out", "/dev/full"], "/dev/full", "No space left on device")


def test_failed_write_leaves_nothing(files: Path, capsys, monkeypatch) -> None:
    """A write that fails part way (here the final rename) leaves an existing output as it
    was and no temporary file."""
    out = files / "old.img"
    out.write_bytes(b"old!")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cli.os, "replace", full)
    before = _before(files)
    refused(capsys, ["encode", "--format", "rle", "--input", files / "x.npy", "--out", out],
            str(out), "No space left on device")
    assert out.read_bytes() == b"old!" and _before(files) == before
    refused(capsys, ["encode", "--format", "rle", "--input", files / "x.npy", "--out",
                     files / "new.img"], "new.img", "No space left on device")
    assert _before(files) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_folder(files: Path, capsys) -> None:
    ro = files / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        refused(capsys, ["encode", "--format", "bitmap", "--input", files / "x.npy",
                         "--out", ro / "o.img"], str(ro / "o.img"), "permission denied")
    finally:
        ro.chmod(0o700)


def test_output_written_exactly(files: Path, capsys) -> None:
    """Outputs land exactly at the path given, with the usual file mode, and an existing
    file is replaced."""
    out = files / "out.img"
    out.write_bytes(b"stale")
    assert main(["encode", "--format", "nm", "--prune", "--input", str(files / "x.npy"),
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 44 and out.read_bytes() != b"stale"
    assert main(["decode", "--input", str(out), "--out", str(files / "y.npy")]) == 0
    assert np.load(files / "y.npy").shape == (8, 5)
    mask = os.umask(0)
    os.umask(mask)
    assert (files / "y.npy").stat().st_mode & 0o777 == 0o666 & ~mask
    assert not [p for p in files.iterdir() if p.name.endswith(".tmp")]


# -- 7. .npy / .npz outputs must be named so -------------------------------------------------
@pytest.mark.parametrize("argv,suffix", [
    (["decode", "--input", "{d}/x.img", "--out", "{d}/Y"], ".npy"),
    (["decode", "--input", "{d}/x.img", "--out", "/dev/full"], ".npy"),
    (["run-layer", "--weights", "{d}/w.npy", "--acts", "{d}/a.npy", "--out", "{d}/Y"],
     ".npy"),
    (["dot", "--weights", "{d}/v5.npy", "--acts", "{d}/v5.npy", "--out", "{d}/Y"], ".npy"),
    (["train-digits", "--out", "{d}/Y"], ".npz"),
])
def test_array_output_suffix(files: Path, capsys, argv: list[str], suffix: str) -> None:
    before, stray = _before(files), Path("/dev/full.npy").exists()
    argv = [a.format(d=files) for a in argv]
    refused(capsys, argv, argv[-1], f"must end in {suffix}")
    assert _before(files) == before
    assert Path("/dev/full.npy").exists() == stray  # numpy would have made /dev/full.npy


# -- 3. images -----------------------------------------------------------------------------
@pytest.mark.parametrize("rtl", [False, True])
def test_decode_empty_or_ragged_image(files: Path, capsys, rtl: bool) -> None:
    (files / "empty.img").write_bytes(b"")
    (files / "ragged.img").write_bytes((files / "x.img").read_bytes()[:-3])
    extra = ["--rtl"] if rtl else []
    for name, why in (("empty.img", "empty file"), ("ragged.img", "not a whole number"),
                      ("none.img", "No such file")):
        refused(capsys, ["decode", *extra, "--input", files / name, "--out", files / "d.npy"],
                str(files / name), why)
    assert not (files / "d.npy").exists()


def test_decode_truncated_image_is_a_decoder_error(files: Path, capsys) -> None:
    """A whole-word image the decoder rejects is the decoder's error: exit 3, its code and
    meaning, no traceback, no output."""
    words = (files / "x.img").read_bytes()
    for cut in (4, 40, len(words) - 4):
        (files / "t.img").write_bytes(words[:cut])
        assert main(["decode", "--input", str(files / "t.img"),
                     "--out", str(files / "d.npy")]) == 3
        err = capsys.readouterr().err
        assert err.startswith(f"error: {files / 't.img'}: TRUNCATED") and "meaning" in err
    assert not (files / "d.npy").exists()


# -- 4. config -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind,why", [
    ("bad.json", "not valid JSON"), ("missing.json", "no such file"),
    ("arr.json", "must be a JSON object"), ("folder", "cannot read"),
    ("inline", "not valid JSON"), ("inline-array", "must be a JSON object"),
    ("field", "'pes' = 4.5: must be an int"),
])
def test_bad_config(files: Path, capsys, kind: str, why: str) -> None:
    (files / "bad.json").write_text("{bad")
    (files / "arr.json").write_text("[1, 2]")
    (files / "folder").mkdir()
    text = {"inline": '{"pes": 4', "inline-array": "[1, 2]", "field": '{"pes": 4.5}'}.get(
        kind, str(files / kind))
    with pytest.raises(ConfigError, match="config"):
        Config.parse(text)
    refused(capsys, ["encode", "--format", "bitmap", "--input", files / "x.npy",
                     "--out", files / "o.img", "--config", text], text if kind != "field"
            else "pes", why)
    assert not (files / "o.img").exists()


# -- 5. requantization ---------------------------------------------------------------------
REQUANT = {
    "nan": ({"mult": [np.nan, 1.0], "shift": [1, 2]}, "mult[0] = ", "nan"),
    "frac-mult": ({"mult": [1.5, 1.0], "shift": [1, 2]}, "mult[0] = ", "1.5"),
    "frac-shift": ({"mult": [1, 1], "shift": [1, 2.5]}, "shift[1] = ", "2.5"),
    "inf": ({"mult": [1, 1], "shift": [np.inf, 1]}, "shift[0] = ", "inf"),
    "big-mult": ({"mult": [1, 40000], "shift": [1, 2]}, "mult[1] = ", "40000"),
    "neg-mult": ({"mult": [-32769, 1], "shift": [1, 2]}, "mult[0] = ", "-32769"),
    "big-shift": ({"mult": [1, 1], "shift": [48, 2]}, "shift[0] = ", "0..47"),
    "neg-shift": ({"mult": [1, 1], "shift": [1, -1]}, "shift[1] = ", "-1"),
    "length": ({"mult": [1, 1, 1], "shift": [1, 2, 3]}, "mult", "K = 2"),
    "text": ({"mult": ["a", "b"], "shift": [1, 2]}, "mult", "dtype"),
    "missing": ({"mult": [1, 1]}, "'shift'", "no array"),
    "relu": ({"mult": [1, 1], "shift": [1, 2], "relu": [1, 0]}, "relu", "0 or 1"),
}


@pytest.mark.parametrize("case", sorted(REQUANT))
def test_bad_requant(files: Path, capsys, case: str) -> None:
    arrays, *needles = REQUANT[case]
    q = files / "q.npz"
    np.savez(q, **{k: np.array(v) for k, v in arrays.items()})
    refused(capsys, ["run-layer", "--weights", files / "w.npy", "--acts", files / "a.npy",
                     "--requant", q, "--out", files / "y.npy"], str(q), *needles)
    assert not (files / "y.npy").exists()


def test_requant_npy(files: Path, capsys) -> None:
    np.save(files / "req.npy", np.ones(2))
    refused(capsys, ["run-layer", "--weights", files / "w.npy", "--acts", files / "a.npy",
                     "--requant", files / "req.npy", "--out", files / "y.npy"],
            "req.npy", "expected a .npz archive")


def test_check_requant_accepts_whole_numbers() -> None:
    m, s = layer_mod.check_requant(np.array([3.0, -32768]), np.array([0, 47], np.uint8), 2)
    assert m.dtype == s.dtype == np.int64 and m.tolist() == [3, -32768] and s.tolist() == [0, 47]


# -- 6. dot operands -----------------------------------------------------------------------
@pytest.mark.parametrize("w,a,needles", [
    ("v5", "v6", ("v6.npy", "length 6", "length 5")),
    ("e", "e", ("e.npy", "empty")),
    ("v5", "e", ("e.npy", "empty")),
    ("w", "v5", ("w.npy", "expected (L,) or (K, L)")),
])
def test_bad_dot_operands(files: Path, capsys, w: str, a: str, needles) -> None:
    refused(capsys, ["dot", "--weights", files / f"{w}.npy", "--acts", files / f"{a}.npy"],
            *needles)


def test_dot_longer_than_max_reduction(files: Path, capsys) -> None:
    refused(capsys, ["dot", "--weights", files / "v6.npy", "--acts", files / "v6.npy",
                     "--config", "max_reduction=5,acc_width=20"], "max_reduction = 5")


# -- 8. layers beyond the engine, refused on the host before any work ---------------------
@pytest.mark.parametrize("w,a,config,encoding,needle", [
    ((2, 9, 1, 1), (9, 4, 4), "max_channels=8", "double", "max_channels >= 9; config has 8"),
    ((2, 3, 3, 3), (3, 64, 65), None, "double", "act_mem_chunks >= 4160"),
    ((2, 3, 3, 3), (3, 5, 5), "wval_mem_words=16", "dense", "wval_mem_words >= 27"),
    ((300, 1, 1, 1), (1, 2, 2), None, "double", "max_filters >= 300"),
    ((2, 3, 3, 3), (3, 5, 5), "out_mem_words=16", "double", "out_mem_words >= 18"),
    ((2, 3, 7, 7), (3, 8, 8), "wgt_mem_chunks=16", "double", "wgt_mem_chunks >= 49"),
])
def test_layer_beyond_engine(files: Path, capsys, w, a, config, encoding, needle) -> None:
    """Huge or over-limit layers are refused within seconds (make_job and every simulator
    runner fail the test if reached)."""
    np.save(files / "W.npy", np.ones(w, np.int8))
    np.save(files / "A.npy", np.ones(a, np.int8))
    argv = ["run-layer", "--weights", files / "W.npy", "--acts", files / "A.npy",
            "--encoding", encoding, "--out", files / "y.npy"]
    if config:
        argv += ["--config", config]
    refused(capsys, argv, "W.npy", needle)
    assert not (files / "y.npy").exists()


def test_layer_needs_match_make_job() -> None:
    """The up-front check and make_job agree: a layer at exactly its needs passes both,
    one word less fails both (with the same message)."""
    from doublesparse.sim.conv import Layer, make_job

    rng = np.random.default_rng(3)
    w = (rng.random((5, 19, 3, 3)) < 0.3) * rng.integers(-128, 128, (5, 19, 3, 3))
    a = rng.integers(-128, 128, (19, 6, 5))
    w, a = w.astype(np.int8), a.astype(np.int8)
    for dense in (False, True):
        base = Config(act_mem_chunks=1024, out_mem_words=1024, wgt_mem_chunks=1024, pes=2)
        need = layer_mod.layer_needs(Layer(5, 19, 3, 3, 6, 5, 1, 1), base, w,
                                     dense_weights=dense)
        exact = base.replace(**{k: max(v, 16) for k, v in need.items()
                                if k.endswith(("_chunks", "_words"))})
        layer_mod.check_layer(w, a, exact, 1, 1, dense_weights=dense)
        make_job(w, a, exact, 1, 1, dense_weights=dense)
        for name in ("act_mem_chunks", "wgt_mem_chunks", "wval_mem_words"):
            if need[name] <= 16:
                continue
            small = exact.replace(**{name: need[name] - 1})
            msgs = []
            for f in (layer_mod.check_layer, make_job):
                with pytest.raises(LayerError, match=name) as e:
                    f(w, a, small, 1, 1, dense_weights=dense)
                msgs.append(str(e.value).split(" (")[0].split(";")[0])
            assert msgs[0] == msgs[1], msgs


# -- 9. synth build folders ----------------------------------------------------------------
def test_synth_refuses_foreign_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "precious.txt").write_text("do not delete")
    refused(capsys, ["synth", "--build-dir", keep], str(keep), "not made by doublesparse",
            synth_mod.BUILD_MARKER)
    with pytest.raises(synth_mod.SynthError, match="refusing to delete"):
        synth_mod.synth("ulx3s-85f", Config(), keep)
    monkeypatch.chdir(keep)
    refused(capsys, ["synth", "--build-dir", "."], "build folder .", "not made by doublesparse")
    (tmp_path / "file").write_text("x")
    refused(capsys, ["synth", "--build-dir", tmp_path / "file"], "not a folder")
    assert (keep / "precious.txt").read_text() == "do not delete"
    assert sorted(p.name for p in keep.iterdir()) == ["precious.txt"]


def test_synth_build_folder_marker(tmp_path: Path, monkeypatch) -> None:
    """synth marks the folder its build makes (failed build or not); the next build into a
    marked folder starts from it empty; an empty existing folder is taken; the block flow
    marks a folder only if it made it."""
    seen = []

    class FailingPlan:  # a build that makes its folder, writes a log and fails
        def extract(self, root):
            self.execute_local(root)

        def execute_local(self, root):
            Path(root).mkdir(parents=True, exist_ok=True)
            seen.append(sorted(p.name for p in Path(root).iterdir()))
            (Path(root) / "top.log").write_text("failed")
            raise RuntimeError("tool failed")

    monkeypatch.setattr(synth_mod, "board_plan", lambda *a, **k: FailingPlan())
    new, empty = tmp_path / "a" / "new", tmp_path / "empty"
    empty.mkdir()
    for d in (new, empty):
        for _ in range(2):
            with pytest.raises(synth_mod.SynthError, match="tool failed"):
                synth_mod.synth("icebreaker", Config(), d)
            assert sorted(p.name for p in d.iterdir()) == [synth_mod.BUILD_MARKER, "top.log"]
            (d / "seed1").mkdir(exist_ok=True)
            (d / "seed1" / "top.tim").write_text("stale")
    assert seen == [[], [synth_mod.BUILD_MARKER]] * 2
    monkeypatch.setattr(synth_mod, "_tool", lambda name: "false")
    for made in (True, False):
        blk = tmp_path / f"blk{made}"
        if not made:
            blk.mkdir()
            (blk / "notes.txt").write_text("mine")
        with pytest.raises(synth_mod.SynthError):
            synth_mod.synth_block("pe", build_dir=blk)
        assert (blk / synth_mod.BUILD_MARKER).is_file() == made


def test_synth_cli_takes_a_marked_folder(tmp_path: Path, capsys, monkeypatch) -> None:
    """With the folder accepted the CLI goes on to synth (replaced here)."""
    d = tmp_path / "b"
    d.mkdir()
    synth_mod.mark_build_dir(d)
    (d / "stale").write_text("x")
    called = []

    def fake(board, cfg, build_dir, *a, **k):
        called.append(synth_mod.claim_build_dir(build_dir))
        raise synth_mod.SynthError("stop here")

    monkeypatch.setattr(synth_mod, "synth", fake)
    assert main(["synth", "--build-dir", str(d)]) == 4
    assert called == [d.resolve()] and not (d / "stale").exists()
    assert (d / synth_mod.BUILD_MARKER).is_file()


# -- the real entry point: no traceback ----------------------------------------------------
def test_entry_point_one_line(files: Path) -> None:
    (files / "bad.json").write_text("{bad")
    for argv in (["encode", "--format", "bitmap", "--input", str(files / "z.npz"),
                  "--out", str(files / "o.img")],
                 ["encode", "--format", "bitmap", "--input", str(files / "x.npy"),
                  "--out", str(files / "o.img"), "--config", str(files / "bad.json")]):
        r = subprocess.run([sys.executable, "-m", "doublesparse.scripts.cli", *argv],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (files / "o.img").exists()


def test_run_layer_port_errors(tmp_path: Path, capsys) -> None:
    """run-layer --port: without --via uart, and with a port that does not exist, one
    error line naming the option and exit 2 (no traceback, no output file)."""
    rng = np.random.default_rng(seed_port := 5)
    print(f"seed {seed_port}")
    w = rng.integers(-3, 4, (4, 16, 3, 3)).astype(np.int8)
    a = rng.integers(-3, 4, (16, 4, 4)).astype(np.int8)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "a.npy", a)
    base = ["run-layer", "--weights", str(tmp_path / "w.npy"), "--acts",
            str(tmp_path / "a.npy"), "--out", str(tmp_path / "y.npy")]
    assert cli.main(base + ["--port", "/dev/ttyDOESNOTEXIST"]) == 2
    assert "--port needs --via uart" in capsys.readouterr().err
    assert cli.main(base + ["--via", "uart", "--port", "/dev/ttyDOESNOTEXIST"]) == 2
    err = capsys.readouterr().err
    assert "--port /dev/ttyDOESNOTEXIST" in err and "Traceback" not in err, err
    assert not (tmp_path / "y.npy").exists()


# -- 8. bias and run-net -------------------------------------------------------------------
@pytest.mark.parametrize("values,needles", [
    ([1, 2, 3], ("K = 2",)),
    ([1.5, 2], ("bias[0] = ", "1.5")),
    ([2**31, 0], ("bias[0] = ",)),
])
def test_bad_bias(files: Path, capsys, values, needles) -> None:
    np.save(files / "b.npy", np.array(values))
    refused(capsys, ["run-layer", "--weights", files / "w.npy", "--acts", files / "a.npy",
                     "--bias", files / "b.npy", "--out", files / "y.npy"], "b.npy", *needles)
    assert not (files / "y.npy").exists()


def test_run_net_bad_inputs(files: Path, capsys) -> None:
    refused(capsys, ["run-net", "--model", files / "none.onnx", "--input", files / "a.npy",
                     "--out", files / "y.npy"], "none.onnx", "not found")
    (files / "junk.onnx").write_bytes(b"\x00not a model")
    refused(capsys, ["run-net", "--model", files / "junk.onnx", "--input", files / "a.npy",
                     "--out", files / "y.npy"], "junk.onnx", "not a readable ONNX model")
    refused(capsys, ["run-net", "--model", files / "none.onnx", "--input", files / "z.npz",
                     "--out", files / "y.npy"], "z.npz")
    assert not (files / "y.npy").exists()
