"""The system top behind its UART pins under Verilator (``tb/cocotb_system.py``): a layer
whose weights cross the UART as N:M images and activations as run-length images, checked
against the golden convolution; then, in a second simulation, corrupted request frames
(bit flips after the sync byte, bad images under a good frame CRC), each refused with a
code that fits it, and a STATUS request answered after them. The stream side, every
format and more corruptions run in Amaranth's simulator (``tb/test_system.py``)."""

from __future__ import annotations

import numpy as np

from doublesparse.rtl.engine.regmap import REG
from doublesparse.rtl.system.protocol import Cmd, Reply, request_frame
from doublesparse.scripts.layer import run_layer_uart
from doublesparse.sim.config import Config
from doublesparse.sim.conv import conv2d_golden
from doublesparse.sim.formats import encode, prune_nm
from doublesparse.tb.runner import run_system_rtl
from doublesparse.tb.streams import seed_for


def test_layer_and_corrupted_frames_over_the_uart() -> None:
    seed = seed_for("system_uart")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    cfg = Config()
    C = K = 16
    w = np.where(rng.random((K, C, 3, 3)) < 0.6, rng.integers(-128, 128, (K, C, 3, 3)), 0)
    w = prune_nm(w.transpose(1, 0, 2, 3), cfg.nm_n, cfg.nm_m).transpose(1, 0, 2, 3)
    a = np.where(rng.random((C, 8, 8)) < 0.4, rng.integers(-128, 128, (C, 8, 8)), 0)
    run = run_layer_uart(w, a, cfg, 1, 1, weight_format="nm", act_format="rle")
    want = conv2d_golden(w, a, 1, 1)
    assert run.error == 0 and run.stats["match"], (
        f"RTL {run.y.ravel()[:8] if run.y is not None else None} vs golden "
        f"{want.ravel()[:8]}")
    print({k: run.stats[k] for k in ("load_request_bytes", "load_cycles",
                                     "uart_load_throughput", "load_images")})
    # corrupted frames: single-bit flips after the sync byte and bad images under a good
    # frame CRC; then STATUS
    frames, kinds = [], []
    small = np.where(rng.random((16, 1, 2)) < 0.5, 3, 0)
    for t in range(60):
        image = [int(v) for v in encode(small, ["bitmap", "rle"][t % 2], cfg)]
        good = request_frame(Cmd.LOAD, 0, [t % 2, 0, 0] + image)
        if t % 2:
            b = bytearray(good)
            b[int(rng.integers(1, len(b)))] ^= 1 << int(rng.integers(0, 8))
            frames.append(bytes(b).hex())
            kinds.append("frame")
        else:
            image[int(rng.integers(0, len(image)))] ^= 1 << int(rng.integers(0, 32))
            frames.append(request_frame(Cmd.LOAD, 0, [0, 0, 0] + image).hex())
            kinds.append("image")
    frames.append(request_frame(Cmd.STATUS).hex())
    steps = [{"frames": frames}, {"read": [REG["C"], 1]}]
    out = run_system_rtl(cfg, steps)
    replies = out[0]["replies"]
    for i, (kind, rep) in enumerate(zip(kinds, replies[:-1], strict=True)):
        if rep is None:                # a flip that enlarged count: the frame times out
            assert kind == "frame", f"frame {i} ({kind}) got no reply"
            continue
        ok = {Reply.BAD_IMAGE} if kind == "image" else {Reply.BAD_CRC, Reply.TIMEOUT,
                                                         Reply.BAD_LENGTH, Reply.BAD_CMD}
        assert rep[0] in ok, f"frame {i} ({kind}): reply {rep}, expected one of {ok}"
    assert replies[-1] is not None and replies[-1][0] == Reply.OK, replies[-1]
    assert replies[-1][2][3] >= len(kinds), f"STATUS refused count {replies[-1][2]}"
    assert out[1]["words"] == [0], f"C register {out[1]['words']}: a refused frame wrote it"
