"""Tiny real WD-style tagger models, built with the ``onnx`` package for tests.

The model honours the WD ONNX contract: one NHWC float32 input [N, S, S, 3] in
BGR with 0–255 values, one [N, L] output that is already a probability (the
Sigmoid is inside the graph). Its score for label ``j`` is
``sigmoid(mean_bgr / 255 · W[:, j] + b[j])``, so a test can predict every
probability with numpy (``expected_probabilities``) and colours decide tags:
a red image gets ``red_theme``, a blue one ``blue_theme`` and ``hatsune_miku``.

The CSV rows are deliberately not in the usual ratings/general/characters
order, and include an artist row (category 1) that a tagger must ignore, so
code that splits by position instead of by category fails.

Other test suites import ``build_tiny_tagger(folder, dynamic_batch=True) -> Path``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIDE = 32
INPUT_NAME = "input_1:0"
OUTPUT_NAME = "predictions_sigmoid"

# (name, category, weight on mean B, G, R in [0, 1], bias)
LABEL_ROWS: tuple[tuple[str, int, float, float, float, float], ...] = (
    ("1girl", 0, 0.0, 0.0, 0.0, 2.0),  # 0.881 always
    ("general", 9, 0.0, 0.0, 0.0, 1.0),
    ("hatsune_miku", 4, 8.0, 0.0, -8.0, 2.0),  # white 0.881, blue ~1, red ~0
    ("long_hair", 0, 0.0, 0.0, 0.0, 0.0),  # 0.5 always
    ("sensitive", 9, 0.0, 0.0, 3.0, -1.0),
    ("red_theme", 0, -4.0, -4.0, 8.0, -2.0),
    ("^_^", 0, 0.0, 0.0, 0.0, -0.7),  # 0.332 always: just under 0.35
    ("kirisame_marisa", 4, 0.0, 0.0, 0.0, 1.0),  # 0.731 always: under 0.85
    ("blue_theme", 0, 8.0, -4.0, -4.0, -2.0),
    ("questionable", 9, 0.0, 0.0, 0.0, -2.0),
    ("white_background", 0, 3.0, 3.0, 3.0, -6.0),  # white 0.953, red 0.047
    ("some_artist", 1, 0.0, 0.0, 0.0, 5.0),  # artist category: never a tag
    ("explicit", 9, 0.0, 0.0, 0.0, -3.0),
    ("smile", 0, 0.0, 0.0, 0.0, -0.5),  # 0.378 always
)


def weights() -> tuple[np.ndarray, np.ndarray]:
    """W [3, L] (rows B, G, R) and b [L] of the tiny model."""
    matrix = np.array([[row[2], row[3], row[4]] for row in LABEL_ROWS], dtype=np.float32).T
    bias = np.array([row[5] for row in LABEL_ROWS], dtype=np.float32)
    return matrix, bias


def expected_probabilities(batch: np.ndarray) -> np.ndarray:
    """What the model must output for a BGR batch [N, S, S, 3], computed with numpy."""
    matrix, bias = weights()
    means = np.asarray(batch, dtype=np.float64).mean(axis=(1, 2)) / 255.0
    return 1.0 / (1.0 + np.exp(-(means @ matrix + bias)))


def label_names() -> list[str]:
    return [row[0] for row in LABEL_ROWS]


def write_selected_tags(path: Path) -> Path:
    """Write a selected_tags.csv in the WD layout for ``LABEL_ROWS``."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tag_id", "name", "category", "count"])
        for index, (name, category, *_rest) in enumerate(LABEL_ROWS):
            writer.writerow([1000 + index, name, category, 100 - index])
    return path


def tiny_tagger_model(dynamic_batch: bool = True, side: int = SIDE, opset: int = 17) -> onnx.ModelProto:
    """The ONNX graph: ReduceMean over H, W → /255 → MatMul W + b → Sigmoid."""
    matrix, bias = weights()
    batch_dim: str | int = "batch" if dynamic_batch else 1
    image = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch_dim, side, side, 3])
    scores = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch_dim, len(LABEL_ROWS)])
    nodes = [
        helper.make_node("ReduceMean", [INPUT_NAME], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("Mul", ["mean", "scale"], ["unit"]),
        helper.make_node("MatMul", ["unit", "W"], ["projected"]),
        helper.make_node("Add", ["projected", "b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], [OUTPUT_NAME]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(1.0 / 255.0, dtype=np.float32), "scale"),
        numpy_helper.from_array(matrix, "W"),
        numpy_helper.from_array(bias, "b"),
    ]
    graph = helper.make_graph(nodes, "tiny_wd_tagger", [image], [scores], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="train-tools-tests")
    model.ir_version = 8  # readable by every onnxruntime the project supports
    return model


def build_tiny_tagger(folder: Path, dynamic_batch: bool = True) -> Path:
    """Write model.onnx + selected_tags.csv of a tiny tagger into ``folder``; return ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(tiny_tagger_model(dynamic_batch), str(folder / "model.onnx"))
    write_selected_tags(folder / "selected_tags.csv")
    return folder
