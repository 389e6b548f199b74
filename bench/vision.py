"""Vision benchmark: product-category frames classified per second per core.

Workload (deterministic from ``seed``): 256 cart snapshots drawn by ``models.vision.synth``
with the held-out nuisances (128x128 JPEG, quality 20-70), cycled. One "frame" is the
whole store-box path: JPEG checks and decode (``decode_jpeg``), centre crop and resize
(``preprocess``) and onnxruntime inference of the shipped model. A second workload feeds
640x480 camera frames (already decoded, as ``cv2.VideoCapture`` delivers them).

Configurations, all measured in the same run, taking turns in short rounds:

- ``ours``: the runtime as shipped, 1 intra-op thread pinned to one CPU, batch 1 (a cart
  snapshot is classified the moment it arrives) and batch 8 (what the worker does when
  snapshots queue up);
- ``baseline``: onnxruntime's default ``SessionOptions`` (its own thread pool over all
  CPUs), batch 1, unpinned - what a naive integration gets;
- ``unoptimised``: the same model with graph optimisations off (``ORT_DISABLE_ALL``:
  BatchNorm not folded into the convolutions), 1 thread pinned, batch 1.

"Per core" is frames per CPU-second - of the calling thread for the one-thread sessions
(``time.thread_time``), of the whole process for the default pool (``time.process_time``)
- so the figure does not depend on how busy a shared machine is, and a thread pool that
spins while it waits pays for its spinning. Wall-clock rates and latencies are reported too.
Also reported: where a batch-1 frame's time goes (decode, preprocess, inference).

    python -m bench.vision --json          # human summary, then one JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_agent.inference.vision.frames import decode_jpeg
from edge_agent.inference.vision.model import (
    ModelInfo,
    VisionModel,
    default_model_path,
    physical_cores,
    preprocess,
)
from models.vision import synth
from protocols.vision import PRODUCT_CATEGORIES

N_SNAPSHOTS = 256
BATCH = 8
ROUNDS = 6


def make_snapshots(seed: int) -> list[bytes]:
    rng = np.random.default_rng([seed, 4242])
    hard = synth.Nuisance.hard()
    return [synth.render_jpeg(i % len(PRODUCT_CATEGORIES), rng, hard) for i in range(N_SNAPSHOTS)]


def make_camera_frames(snapshots: list[bytes]) -> list[np.ndarray]:
    """640x480 frames: a snapshot in the middle of a basket-coloured frame."""
    out = []
    for data in snapshots[:32]:
        frame = np.full((480, 640, 3), 90, np.uint8)
        img = decode_jpeg(data)
        big = np.kron(img, np.ones((3, 3, 1), np.uint8))  # 384 px product, nearest-neighbour
        frame[48:432, 128:512] = big
        out.append(frame)
    return out


@contextmanager
def pinned_to_one_cpu() -> Iterator[str]:
    """Run on one CPU so that 'per core' means one core, not whatever the OS lent us."""
    try:
        before = os.sched_getaffinity(0)
    except AttributeError:  # not Linux: measure unpinned and say so
        yield "unpinned"
        return
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield f"cpu{cpu}"
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Result:
    frames: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the measuring thread, or of the whole process
    lat: list[float] = field(default_factory=list)

    def add(self, other: Result) -> None:
        self.frames += other.frames
        self.wall_s += other.wall_s
        self.cpu_s += other.cpu_s
        self.lat += other.lat

    @property
    def per_cpu_second(self) -> float:
        return self.frames / self.cpu_s

    @property
    def per_wall_second(self) -> float:
        return self.frames / self.wall_s


def _measure(
    step: Callable[[int], int], seconds: float, *, cpu_clock: Callable[[], float]
) -> Result:
    """Call ``step(i)`` (returns frames done) until ``seconds`` of wall time pass."""
    for i in range(10):  # warm-up: onnxruntime allocates its arena on the first runs
        step(i)
    out, i = Result(), 0
    t_start, c_start = time.perf_counter(), cpu_clock()
    while True:
        t0 = time.perf_counter()
        out.frames += step(i)
        t1 = time.perf_counter()
        out.lat.append(t1 - t0)
        i += 1
        if t1 - t_start >= seconds:
            out.wall_s, out.cpu_s = t1 - t_start, cpu_clock() - c_start
            return out


def _interleaved(
    pinned: dict[str, Callable[[int], int]],
    unpinned: dict[str, Callable[[int], int]],
    *,
    seconds: float,
    rounds: int,
) -> dict[str, Result]:
    totals = {k: Result() for k in [*pinned, *unpinned]}
    for _ in range(rounds):
        with pinned_to_one_cpu():
            # One intra-op thread runs the graph on the calling thread: its CPU time is
            # the whole cost, and a neighbour's thread pool cannot leak into it.
            for name, step in pinned.items():
                totals[name].add(_measure(step, seconds / rounds, cpu_clock=time.thread_time))
        for name, step in unpinned.items():
            # A pool: count the CPU time of every thread in the process.
            totals[name].add(_measure(step, seconds / rounds, cpu_clock=time.process_time))
        time.sleep(0.05)  # let the default pool's spinning threads go idle
    return totals


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q * 100)) * 1e3


class DefaultSession:
    """The shipped model in a session with onnxruntime's default options (the store box
    never runs this: it does not bound its threads)."""

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self.session = ort.InferenceSession(
            str(default_model_path()), providers=["CPUExecutionProvider"]
        )
        self._input = self.session.get_inputs()[0].name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self._input: batch})[0])


Runnable = VisionModel | DefaultSession


def _snapshot_step(model: Runnable, snaps: list[bytes], batch: int) -> Callable[[int], int]:
    size = model.info.input_size

    def step(i: int) -> int:
        k = i * batch
        imgs = [decode_jpeg(snaps[(k + j) % len(snaps)]) for j in range(batch)]
        model.predict(preprocess(imgs, size=size))
        return batch

    return step


def _camera_step(model: Runnable, frames: list[np.ndarray]) -> Callable[[int], int]:
    size = model.info.input_size

    def step(i: int) -> int:
        model.predict(preprocess([frames[i % len(frames)]], size=size))
        return 1

    return step


def _breakdown(model: VisionModel, snaps: list[bytes]) -> dict[str, float]:
    """Median ms per batch-1 frame spent in each stage (pinned, after warm-up)."""
    stages: dict[str, list[float]] = {"decode_ms": [], "preprocess_ms": [], "infer_ms": []}
    with pinned_to_one_cpu():
        for i in range(300):
            t0 = time.perf_counter()
            img = decode_jpeg(snaps[i % len(snaps)])
            t1 = time.perf_counter()
            batch = preprocess([img], size=model.info.input_size)
            t2 = time.perf_counter()
            model.predict(batch)
            t3 = time.perf_counter()
            if i >= 20:
                stages["decode_ms"].append(t1 - t0)
                stages["preprocess_ms"].append(t2 - t1)
                stages["infer_ms"].append(t3 - t2)
    return {k: round(_pct(v, 0.5), 3) for k, v in stages.items()}


def run(*, seconds: float, seed: int) -> dict[str, Any]:
    snaps = make_snapshots(seed)
    camera = make_camera_frames(snaps)
    ours = VisionModel(intra_op_threads=1)
    base = VisionModel(intra_op_threads=1, optimize=False)

    # The optimised and unoptimised graphs must agree before their speeds are compared.
    check = preprocess([decode_jpeg(s) for s in snaps[:32]], size=ours.info.input_size)
    if not np.allclose(ours.predict(check), base.predict(check), atol=1e-4):
        raise AssertionError("optimised and unoptimised graphs disagree")

    # Configurations take turns in short rounds, so that other load on a shared machine
    # falls on all of them alike instead of on whichever ran at the wrong moment.
    pinned = {
        "ours": _snapshot_step(ours, snaps, 1),
        "ours_batch8": _snapshot_step(ours, snaps, BATCH),
        "camera": _camera_step(ours, camera),
        "unoptimised": _snapshot_step(base, snaps, 1),
    }
    default = DefaultSession(ours.info)
    unpinned = {"default": _snapshot_step(default, snaps, 1)}
    got = _interleaved(pinned, unpinned, seconds=seconds, rounds=ROUNDS)
    with pinned_to_one_cpu() as cpu:  # only to name the CPU in the report
        pass
    cores = physical_cores()
    ours1, ours8, cam = got["ours"], got["ours_batch8"], got["camera"]
    unopt, dflt = got["unoptimised"], got["default"]
    per_core = ours1.per_cpu_second
    baseline = dflt.per_cpu_second
    split = _breakdown(ours, snaps)
    return {
        "bench": "vision",
        "model": ours.info.tag,
        "input_px": ours.info.input_size,
        "frames_per_s_per_core": round(per_core, 1),
        "frames_per_s_wall": round(ours1.per_wall_second, 1),
        "p50_ms": round(_pct(ours1.lat, 0.5), 3),
        "p99_ms": round(_pct(ours1.lat, 0.99), 3),
        "batch8_frames_per_s_per_core": round(ours8.per_cpu_second, 1),
        "camera_640x480_frames_per_s_per_core": round(cam.per_cpu_second, 1),
        "camera_p50_ms": round(_pct(cam.lat, 0.5), 3),
        **split,
        "baseline": "same model, onnxruntime default session options (all threads), batch 1",
        "baseline_frames_per_s_per_core": round(baseline, 1),
        "baseline_frames_per_s_wall": round(dflt.per_wall_second, 1),
        "baseline_p50_ms": round(_pct(dflt.lat, 0.5), 3),
        "speedup": round(per_core / baseline, 2),
        "unoptimised_frames_per_s_per_core": round(unopt.per_cpu_second, 1),
        "unoptimised_p50_ms": round(_pct(unopt.lat, 0.5), 3),
        "physical_cores": cores,
        "snapshots": len(snaps),
        "seconds_per_config": seconds,
        "cpu": cpu,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "onnxruntime": ort.__version__,
        "python": platform.python_version(),
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.vision", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--json", action="store_true", help="end with one JSON line (always printed last)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per configuration")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    r = run(seconds=args.seconds, seed=args.seed)
    print(
        f"vision: {r['frames_per_s_per_core']:,.0f} frames per CPU-second on one core "
        f"(p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; batch {BATCH}: "
        f"{r['batch8_frames_per_s_per_core']:,.0f}; 640x480 camera: "
        f"{r['camera_640x480_frames_per_s_per_core']:,.0f}; decode {r['decode_ms']} + "
        f"preprocess {r['preprocess_ms']} + infer {r['infer_ms']} ms); baseline "
        f"(onnxruntime defaults, {r['physical_cores']} cores) "
        f"{r['baseline_frames_per_s_per_core']:,.0f} per CPU-second "
        f"({r['baseline_frames_per_s_wall']:,.0f}/s wall), speedup x{r['speedup']}; "
        f"unoptimised graph {r['unoptimised_frames_per_s_per_core']:,.0f}; "
        f"load avg {r['load_avg_1m']}"
    )
    if args.json:
        print(json.dumps(r, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
