"""Quantized ONNX models through the import (``sim/onnx_import.py``) and ``run-net``
(``scripts/run_net.py``): every test model of ``tb/onnx_models.py`` against the ONNX
reference evaluator and ONNX Runtime (two independent references), within 1 LSB at every
output and every engine layer, same top-1 class; random models as a property; every
unsupported construct refused naming the node, its operator and why; the CLI; and the
engine layers through the RTL under each simulator in ``DS_SIMS``, bit-exact against the
golden model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from doublesparse.scripts.cli import main
from doublesparse.scripts.run_net import lsb_diff, run_net
from doublesparse.sim.config import Config
from doublesparse.sim.conv import REQUANT_MULT, requant_params
from doublesparse.sim.onnx_import import OnnxImportError, import_model
from doublesparse.tb import onnx_models as M

SIMS = [s for s in os.environ.get("DS_SIMS", "verilator,icarus").split(",") if s]
SEED = int(os.environ.get("DS_SEED", "7"))
CFG = Config()       # the engine tests' config: one shared build per simulator

VALID = ["small_cnn", "residual_cnn", "mlp", "avgpool_cnn", "float_weight_cnn"]


def _ort(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.asarray(x, np.float32)
    if x.ndim == len(sess.get_inputs()[0].shape) - 1:
        x = x[None]
    return sess.run(None, {name: x})


def _check_against_references(model: onnx.ModelProto, x: np.ndarray, what: str) -> None:
    run = run_net(model, x, CFG, sim="none", progress=False)
    prog = import_model(model)
    for r in run.layers:
        assert r["max_lsb_diff_vs_onnx"] <= 1.0 + 1e-6, (
            f"{what}: layer {r['name']} is {r['max_lsb_diff_vs_onnx']:.3f} LSB from the ONNX "
            f"reference")
    for (name, f), ort_out in zip(run.final.items(), _ort(model, x), strict=True):
        assert f["over_one_lsb"] == 0, f"{what}: output {name}: {f}"
        if "top1" in f:
            assert f["top1"] == f["top1_reference"], (what, f["top1"], f["top1_reference"])
        # ONNX Runtime as a second reference
        y = run.outputs[name]
        lsb = 1.0 if y.dtype == np.int8 else prog.lsb[name]
        d = lsb_diff(y, ort_out, lsb)
        assert d.max() <= 1.0 + 1e-6, (
            f"{what}: output {name} is {d.max():.3f} LSB from ONNX Runtime; ours "
            f"{y.ravel()[:6]}, ORT {np.asarray(ort_out).ravel()[:6]}")
        print(f"{what}: {name} {y.shape}: largest difference {f['max_lsb_diff']:.3f} LSB "
              f"(reference), {d.max():.3f} LSB (ONNX Runtime); {f['one_lsb_diffs']} 1-LSB")


@pytest.mark.parametrize("name", VALID)
def test_model_matches_onnx_references(name: str) -> None:
    model, x = getattr(M, name)()
    prog = import_model(model)
    assert prog.layers, f"{name}: no engine layer"
    _check_against_references(model, x, name)


@pytest.mark.parametrize("seed", range(SEED, SEED + 12))
def test_random_models(seed: int) -> None:
    print(f"seed {seed}")
    model, x = M.random_model(seed)
    _check_against_references(model, x, f"random model {seed}")


REFUSED = {
    "grouped_conv": ("Conv", "group 2"),
    "dilated_conv": ("Conv", "dilations"),
    "asymmetric_pad_conv": ("Conv", "pads"),
    "uint8_activations": ("zero point",),
    "unsupported_op": ("Sigmoid", "not supported"),
    "big_kernel": ("Conv", "9x9"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsupported_is_refused_naming_the_node(name: str) -> None:
    model, _ = getattr(M, name)()
    with pytest.raises(OnnxImportError) as e:
        import_model(model)
    msg = str(e.value)
    print(msg)
    for needle in REFUSED[name]:
        assert needle in msg, (needle, msg)
    names = {n.name for n in model.graph.node}
    assert any(f"'{n}'" in msg for n in names), f"no node named in {msg!r}"


def test_requant_params_error_bound() -> None:
    rng = np.random.default_rng(SEED)
    M_ = np.exp(rng.uniform(np.log(2.0 ** -33), np.log(30000.0), 2000))
    mult, shift = requant_params(M_)
    assert mult.min() >= REQUANT_MULT[0] and mult.max() <= REQUANT_MULT[1]
    assert shift.min() >= 0 and shift.max() <= 47
    err = np.abs(mult / 2.0 ** shift - M_)
    assert np.all(err <= M_ * 2.0 ** -15), (M_[np.argmax(err / M_)], err.max())
    with pytest.raises(ValueError, match="does not fit"):
        requant_params([40000.0])
    with pytest.raises(ValueError, match="not finite"):
        requant_params([np.nan])


def test_run_net_cli(tmp_path: Path, capsys) -> None:
    model, x = M.small_cnn()
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", x)
    rc = main(["run-net", "--model", str(tmp_path / "m.onnx"), "--input",
               str(tmp_path / "x.npy"), "--sim", "none", "--out", str(tmp_path / "y.npy"),
               "--stats", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    print(out)
    assert rc == 0
    y = np.load(tmp_path / "y.npy")
    st = json.loads((tmp_path / "s.json").read_text())
    want = _ort(model, x)[0]
    assert y.shape == want.shape, (y.shape, want.shape)
    for r in st["layers"]:
        for k in ("name", "shape", "d_w", "d_a", "cycles", "predicted_cycles", "utilization",
                  "speedup_vs_dense", "max_lsb_diff_vs_onnx"):
            assert k in r, (k, r)
        assert r["name"] in out
    # a model it cannot map: exit 2, one line naming the node
    bad, _ = M.grouped_conv()
    onnx.save(bad, tmp_path / "bad.onnx")
    rc = main(["run-net", "--model", str(tmp_path / "bad.onnx"), "--input",
               str(tmp_path / "x.npy"), "--sim", "none", "--out", str(tmp_path / "z.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "group 2" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "z.npy").exists()


@pytest.mark.parametrize("sim", SIMS)
def test_engine_layers_through_the_rtl(sim: str) -> None:
    model, x = M.small_cnn()
    x = np.asarray(x, np.float32)
    if x.ndim == 4 and x.shape[0] == 1:
        x = np.concatenate([x, x[:, ::-1].copy()])        # two images
    run = run_net(model, x, CFG, sim=sim, batch=2, progress=False)
    assert not run.failures, "\n".join(run.failures)
    for r in run.layers:
        assert r["bit_exact_vs_golden"], r
        assert r["cycles"] and r["cycles"] > 0, r
        print(f"{r['name']}: {r['cycles']:.0f} cycles (model {r['predicted_cycles']:.0f}), "
              f"utilization {r['utilization']:.2f}, {r['max_lsb_diff_vs_onnx']:.2f} LSB")
    for f in run.final.values():
        assert f["over_one_lsb"] == 0, f
