"""Train the product-category CNN on procedural images and export it to ONNX.

    pip install -e '.[train]'                         # torch (CPU) and onnx
    python -m models.vision.train                     # writes product_cnn.onnx + metrics.json

Reproducible: fixed seeds, one torch thread (deterministic CPU kernels; more threads were
slower on the shared 2-core box anyway), data drawn by ``models.vision.synth`` from
``TRAIN_SEED`` (train) and ``TEST_SEED`` with ``Nuisance.hard()`` (held out). The held-out
evaluation runs the exported ONNX file through the store box's own runtime
(``edge_agent.inference.vision``), so the reported accuracy is that of the shipped path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from edge_agent.inference.vision.model import VisionModel, preprocess
from models.vision import synth
from protocols.vision import PRODUCT_CATEGORIES

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
NAME = "product_cnn"
VERSION = "1.0.0"
INPUT_SIZE = 48  # px; 64 cost 3x the training time for no held-out gain we could see
TRAIN_SEED = 1
TEST_SEED = 1_000_001  # far from TRAIN_SEED: no stream overlap with the training set
OPSET = 17  # onnxruntime >= 1.14 runs opset 17


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class ProductNet(nn.Module):
    """A small CNN: ~80k weights, two strided stages so most work happens at 12x12.

    Input: uint8 BGR (N, S, S, 3) exactly as the store box decodes it; the uint8 -> float
    scaling and the NHWC -> NCHW transpose are part of the graph. Output: probabilities.
    """

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(3, 16, 2),
            *conv_bn_relu(16, 32, 2),
            *conv_bn_relu(32, 64),
            nn.MaxPool2d(2),
            *conv_bn_relu(64, 96),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(96, n_classes))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        # (x/255 - 0.5) / 0.25: centred, unit-ish range; folded into the first conv by ORT
        x = x.permute(0, 3, 1, 2).float() * (1.0 / 63.75) - 2.0
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def _batches(n: int, size: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=gen).split(size))


def train(x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int) -> ProductNet:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = ProductNet(len(PRODUCT_CATEGORIES))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    batch = 64
    steps = epochs * ((len(x) + batch - 1) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    for epoch in range(epochs):
        model.train()
        t0, total, correct = time.perf_counter(), 0.0, 0
        for idx in _batches(len(x), batch, gen):
            xb, yb = xt[idx], yt[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5  # mirror: packs face both ways
            xb = torch.where(flip[:, None, None, None], xb.flip(2), xb)
            opt.zero_grad(set_to_none=True)
            out = model.logits(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        logger.info(
            "epoch %d/%d loss %.3f train acc %.3f (%.0f s)",
            epoch + 1,
            epochs,
            total / len(x),
            correct / len(x),
            time.perf_counter() - t0,
        )
    return model.eval()


def export(model: ProductNet, path: Path) -> None:
    dummy = torch.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), dtype=torch.uint8)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["image"],
        output_names=["probs"],
        dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}},
    )
    proto = onnx.load(str(path))
    for key, value in {
        "name": NAME,
        "version": VERSION,
        "labels": json.dumps(list(PRODUCT_CATEGORIES)),
        "input_size": str(INPUT_SIZE),
        "input_format": "uint8 BGR NHWC, centre-cropped square, INTER_AREA resize",
        "training_data": f"models.vision.synth seed={TRAIN_SEED} (synthetic)",
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = "storefleet product-category CNN (synthetic training data)"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def evaluate(model_path: Path, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Held-out accuracy, confusion matrix and one-core latency through the runtime."""
    runtime = VisionModel(model_path, intra_op_threads=1)
    probs = np.concatenate(
        [
            runtime.predict(runtime.preprocess(list(images[i : i + 256])))
            for i in range(0, len(images), 256)
        ]
    )
    pred = probs.argmax(1)
    n = len(PRODUCT_CATEGORIES)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    recall = confusion.diagonal() / confusion.sum(1)
    off = [
        (int(confusion[i, j]), PRODUCT_CATEGORIES[i], PRODUCT_CATEGORIES[j])
        for i in range(n)
        for j in range(n)
        if i != j and confusion[i, j]
    ]
    frame = images[0]
    for _ in range(20):  # warm-up: first runs allocate
        runtime.predict(runtime.preprocess([frame]))
    lat = []
    for i in range(300):
        t0 = time.perf_counter()
        runtime.predict(runtime.preprocess([images[i % len(images)]]))
        lat.append(time.perf_counter() - t0)
    return {
        "accuracy": float((pred == labels).mean()),
        "n": len(labels),
        "recall": {c: round(float(r), 4) for c, r in zip(PRODUCT_CATEGORIES, recall, strict=True)},
        "top_confusions": [f"{a} -> {b}: {k}" for k, a, b in sorted(off, reverse=True)[:8]],
        "confusion": confusion.tolist(),
        "latency_ms_1core_p50": round(float(np.percentile(lat, 50)) * 1e3, 3),
        "latency_ms_1core_p99": round(float(np.percentile(lat, 99)) * 1e3, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / f"{NAME}.onnx")
    ap.add_argument("--metrics", type=Path, default=HERE / "metrics.json")
    ap.add_argument("--train-per-class", type=int, default=1000)
    ap.add_argument("--test-per-class", type=int, default=150)
    ap.add_argument("--epochs", type=int, default=14)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    raw, y = synth.make_dataset(args.train_per_class, seed=TRAIN_SEED)
    x = preprocess(list(raw), size=INPUT_SIZE)
    raw_test, y_test = synth.make_dataset(args.test_per_class, seed=TEST_SEED, hard=True)
    t_data = time.perf_counter() - t0
    logger.info("data: %d train, %d held-out images in %.0f s", len(x), len(raw_test), t_data)
    model = train(x, y, epochs=args.epochs, seed=TRAIN_SEED)
    t_train = time.perf_counter() - t0 - t_data
    export(model, args.out)
    report = evaluate(args.out, raw_test, y_test)
    report.update(
        {
            "model": f"{NAME}@{VERSION}",
            "sha256": hashlib.sha256(args.out.read_bytes()).hexdigest(),
            "bytes": args.out.stat().st_size,
            "params": sum(p.numel() for p in model.parameters()),
            "train_images": len(x),
            "epochs": args.epochs,
            "train_seed": TRAIN_SEED,
            "test_seed": TEST_SEED,
            "data_seconds": round(t_data, 1),
            "train_seconds": round(t_train, 1),
            "torch": torch.__version__,
        }
    )
    args.metrics.write_text(json.dumps(report, indent=1) + "\n")
    logger.info(
        "held-out accuracy %.4f; p50 %.2f ms/frame on one core",
        report["accuracy"],
        report["latency_ms_1core_p50"],
    )
    print(json.dumps({k: report[k] for k in ("accuracy", "latency_ms_1core_p50", "bytes")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
