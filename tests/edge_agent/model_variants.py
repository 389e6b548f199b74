"""Candidate ONNX models for the model-rollout tests (decision 0042), built in a few
milliseconds from the shipped ones with ``onnx``: a good re-release, and the ways a
model can be wrong (its input, its output, NaN everywhere, NaN only on real input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_agent.inference.vision.model import default_model_path
from models.positioning.train_demo_store import DEMO_MODEL


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _set_meta(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def _rewire(model: onnx.ModelProto, nodes: list[onnx.NodeProto],
            inits: list[onnx.TensorProto], *, raw: str) -> None:
    """The graph's output is renamed ``raw`` where it is made; ``nodes`` make it again."""
    out = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [raw if o == out else o for o in node.output]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)


def vision_release(path: Path, version: str) -> Path:
    """The shipped vision model, re-released as ``version`` (other bytes, same graph)."""
    model = onnx.load(default_model_path())
    _set_meta(model, "version", version)
    return _save(model, path)


def vision_nchw(path: Path) -> Path:
    """Float input in (batch, 3, 48, 48): not what the classifier feeds."""
    model = onnx.load(default_model_path())
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 48, 48])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])
    w = numpy_helper.from_array(np.full((3 * 48 * 48, 10), 1e-4, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "nchw", [x], [y], [w])
    out = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out.ir_version = model.ir_version
    for prop in model.metadata_props:
        out.metadata_props.add(key=prop.key, value=prop.value)
    return _save(out, path)


def vision_small(path: Path, *, size: int = 24) -> Path:
    """A valid vision model of another input size (``size``): one linear layer."""
    model = onnx.load(default_model_path())
    x = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", size, size, 3])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])
    w = numpy_helper.from_array(
        np.random.default_rng(0).normal(0, 1e-4, (size * size * 3, 10)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
         helper.make_node("Flatten", ["pixels"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "small", [x], [y], [w])
    out = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out.ir_version = model.ir_version
    for prop in model.metadata_props:
        out.metadata_props.add(key=prop.key, value=prop.value)
    _set_meta(out, "input_size", str(size))
    _set_meta(out, "name", "small")
    return _save(out, path)


def vision_extra_label(path: Path) -> Path:
    """Eleven scores for ten labels."""
    model = onnx.load(default_model_path())
    _rewire(model, [helper.make_node("Pad", ["raw", "pads"], ["probs"])],
            [numpy_helper.from_array(np.array([0, 0, 0, 1], np.int64), "pads")], raw="raw")
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 11
    return _save(model, path)


def vision_nan(path: Path) -> Path:
    """Loads and has the right shapes, answers NaN for everything."""
    model = onnx.load(default_model_path())
    _rewire(model, [helper.make_node("Mul", ["raw", "nan"], ["probs"])],
            [numpy_helper.from_array(np.array(np.nan, np.float32), "nan")], raw="raw")
    return _save(model, path)


def vision_nan_on_pixels(path: Path) -> Path:
    """Right on a black frame (the smoke test's), NaN on any real picture:
    ``probs + 0 * sqrt(-mean(image))``."""
    model = onnx.load(default_model_path())
    image = model.graph.input[0].name
    _rewire(model, [
        helper.make_node("Cast", [image], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["as_float"], ["mean"], keepdims=0),
        helper.make_node("Neg", ["mean"], ["neg"]),
        helper.make_node("Sqrt", ["neg"], ["root"]),
        helper.make_node("Mul", ["root", "zero"], ["nan_if_lit"]),
        helper.make_node("Add", ["raw", "nan_if_lit"], ["probs"]),
    ], [numpy_helper.from_array(np.array(0.0, np.float32), "zero")], raw="raw")
    return _save(model, path)


def positioning_release(path: Path, version: str) -> Path:
    """The demo store's positioning model with other bytes (a version in its metadata)."""
    model = onnx.load(DEMO_MODEL)
    _set_meta(model, "version", version)
    return _save(model, path)


def positioning_nan_on_signal(path: Path) -> Path:
    """Right when nothing is heard (-100 dBm everywhere, the smoke test's), NaN once
    anchors are heard: ``fix + 0 * sqrt(-(mean(rssi) + 100))``."""
    model = onnx.load(DEMO_MODEL)
    rssi = model.graph.input[0].name
    _rewire(model, [
        helper.make_node("ReduceMean", [rssi], ["mean"], keepdims=0),
        helper.make_node("Add", ["mean", "hundred"], ["above_floor"]),
        helper.make_node("Neg", ["above_floor"], ["neg"]),
        helper.make_node("Sqrt", ["neg"], ["root"]),
        helper.make_node("Mul", ["root", "zero"], ["nan_if_heard"]),
        helper.make_node("Add", ["raw", "nan_if_heard"], [model.graph.output[0].name]),
    ], [numpy_helper.from_array(np.array(100.0, np.float32), "hundred"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero")], raw="raw")
    return _save(model, path)
