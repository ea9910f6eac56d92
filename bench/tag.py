"""Benchmark of the WD14 tagging pipeline (issue 5, item 9).

Builds a random-weight ViT-small-like tagger (patch 16 at 448², width 384,
6 heads, MLP 1536, 12 blocks, 10,861 sigmoid outputs, dynamic batch) with the
``onnx`` helper, writes N generated 1024×1536 JPEGs, then times on one shared
onnxruntime session:

- ours: ``tag_files`` (pool decode + preprocess overlapped with batched inference, captions written);
- baseline: one image at a time — decode, preprocess, run with batch 1;
- pure inference: the same batches on tensors prepared beforehand (no decoding at all).

Targets from the issue: ours ≤ 0.5 × baseline and ours ≤ 1.2 × pure inference.
The last line is ``RESULT key=value …``. Usage: ``python bench/tag.py [--images 64] [--depth 12]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_ext.tagger.labels import Labels  # noqa: E402
from lora_ext.tagger.pipeline import WriteOptions, tag_files  # noqa: E402
from lora_ext.tagger.postprocess import TagOptions  # noqa: E402
from lora_ext.tagger.preprocess import load_model_input  # noqa: E402
from lora_ext.tagger.session import open_session  # noqa: E402

SIDE, PATCH, WIDTH, HEADS, MLP = 448, 16, 384, 6, 1536
RATINGS, GENERAL, CHARACTERS = 4, 8106, 2751  # the v3 label split


class GraphBuilder:
    """Just enough of a graph builder for a ViT: named initialisers and nodes."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, value: np.ndarray, name: str | None = None) -> str:
        name = name or f"c{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, *shape: int) -> str:
        return self.const((self.rng.standard_normal(shape) * 0.02).astype(np.float32))

    def op(self, kind: str, *inputs: str, **attributes: object) -> str:
        self.count += 1
        output = f"{kind.lower()}{self.count}"
        self.nodes.append(helper.make_node(kind, list(inputs), [output], **attributes))
        return output

    def linear(self, x: str, fan_in: int, fan_out: int) -> str:
        return self.op(
            "Add", self.op("MatMul", x, self.weight(fan_in, fan_out)), self.const(np.zeros(fan_out, np.float32))
        )

    def layer_norm(self, x: str) -> str:
        ones, zeros = np.ones(WIDTH, np.float32), np.zeros(WIDTH, np.float32)
        return self.op("LayerNormalization", x, self.const(ones), self.const(zeros), axis=-1, epsilon=1e-6)

    def block(self, x: str, tokens: int) -> str:
        head = WIDTH // HEADS
        qkv = self.linear(self.layer_norm(x), WIDTH, 3 * WIDTH)  # [N, T, 3C]
        qkv = self.op("Reshape", qkv, self.const(np.array([-1, tokens, 3, HEADS, head], np.int64)))
        qkv = self.op("Transpose", qkv, perm=[2, 0, 3, 1, 4])  # [3, N, H, T, d]
        q, k, v = (self.op("Gather", qkv, self.const(np.array(i, np.int64)), axis=0) for i in range(3))
        scores = self.op(
            "Mul", self.op("MatMul", q, self.op("Transpose", k, perm=[0, 1, 3, 2])), self.const(np.float32(head**-0.5))
        )
        attended = self.op("MatMul", self.op("Softmax", scores, axis=-1), v)  # [N, H, T, d]
        merged = self.op(
            "Reshape",
            self.op("Transpose", attended, perm=[0, 2, 1, 3]),
            self.const(np.array([-1, tokens, WIDTH], np.int64)),
        )
        x = self.op("Add", x, self.linear(merged, WIDTH, WIDTH))
        hidden = self.linear(self.layer_norm(x), WIDTH, MLP)
        hidden = self.op(
            "Mul", hidden, self.op("Sigmoid", self.op("Mul", hidden, self.const(np.float32(1.702))))
        )  # GELU
        return self.op("Add", x, self.linear(hidden, MLP, WIDTH))


def build_vit_tagger(depth: int, labels: int) -> onnx.ModelProto:
    """A WD-contract ViT: NHWC BGR 0–255 in, in-graph scaling, sigmoid probabilities out."""
    graph = GraphBuilder()
    tokens = (SIDE // PATCH) ** 2
    x = graph.op("Div", graph.op("Sub", "input", graph.const(np.float32(127.5))), graph.const(np.float32(127.5)))
    x = graph.op("Transpose", x, perm=[0, 3, 1, 2])
    x = graph.op(
        "Conv",
        x,
        graph.weight(WIDTH, 3, PATCH, PATCH),
        graph.const(np.zeros(WIDTH, np.float32)),
        strides=[PATCH, PATCH],
    )
    x = graph.op(
        "Transpose", graph.op("Reshape", x, graph.const(np.array([-1, WIDTH, tokens], np.int64))), perm=[0, 2, 1]
    )
    x = graph.op("Add", x, graph.weight(1, tokens, WIDTH))
    for _ in range(depth):
        x = graph.block(x, tokens)
    pooled = graph.op("ReduceMean", graph.layer_norm(x), axes=[1], keepdims=0)
    graph.nodes.append(helper.make_node("Sigmoid", [graph.linear(pooled, WIDTH, labels)], ["output"]))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", SIDE, SIDE, 3])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", labels])]
    model = helper.make_model(
        helper.make_graph(graph.nodes, "vit_small_tagger", inputs, outputs, graph.initializers),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    return model


def synthetic_labels() -> Labels:
    names = ["general", "sensitive", "questionable", "explicit"]
    names += [f"tag_{i}" for i in range(GENERAL)] + [f"character_{i}" for i in range(CHARACTERS)]
    categories = ["rating"] * RATINGS + ["general"] * GENERAL + ["character"] * CHARACTERS
    return Labels(tuple(names), tuple(categories))  # type: ignore[arg-type]


def write_images(folder: Path, count: int, width: int = 1024, height: int = 1536) -> list[Path]:
    """Photo-like JPEGs: smooth colour fields, edges and grain (not flat colour, not pure noise)."""
    rng = np.random.default_rng(1)
    paths = []
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for index in range(count):
        phase = rng.uniform(0, 6.28, 3)
        field = np.stack([np.sin(x / (60 + 40 * c) + y / (90 + 30 * c) + phase[c]) for c in range(3)], axis=2)
        pixels = 127 + 90 * field + rng.normal(0, 10, (height, width, 3)).astype(np.float32)
        pixels[(x - width / 2) ** 2 + (y - height / 2) ** 2 < (200 + 5 * index) ** 2] *= 0.5
        path = folder / f"image_{index:03d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def timed(function, *args, **kwargs) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--depth", type=int, default=12, help="transformer blocks (ViT-small: 12)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    parser.add_argument("--workers", type=int, default=None, help="decode threads (default: cores, at most 8)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tag-bench-") as temp:
        folder = Path(temp)
        build_s, _ = timed(
            onnx.save, build_vit_tagger(args.depth, RATINGS + GENERAL + CHARACTERS), str(folder / "model.onnx")
        )
        images_s, paths = timed(write_images, folder, args.images)
        session = open_session(folder / "model.onnx", threads=args.threads)
        labels = synthetic_labels()
        print(
            f"model built in {build_s:.1f} s, {args.images} JPEGs 1024x1536 in {images_s:.1f} s, "
            f"providers {session.providers}, {os.cpu_count()} CPUs",
            flush=True,
        )

        prepare_s, tensors = timed(lambda: [load_model_input(p, SIDE) for p in paths])
        session.run(np.stack(tensors[: args.batch_size]))  # warm-up: allocations, kernel selection

        def pure() -> None:
            for start in range(0, len(tensors), args.batch_size):
                session.run(np.stack(tensors[start : start + args.batch_size]))

        def baseline() -> None:
            for path in paths:
                session.run(load_model_input(path, SIDE)[np.newaxis])

        def ours() -> object:
            return tag_files(
                paths,
                session,
                labels,
                TagOptions(),
                WriteOptions(existing="overwrite"),
                batch_size=args.batch_size,
                workers=args.workers,
            )

        pure_s, _ = timed(pure)
        print(f"pure inference (batch {args.batch_size}, pre-made tensors): {pure_s:.2f} s", flush=True)
        baseline_s, _ = timed(baseline)
        print(f"baseline (decode, preprocess, run batch 1, sequential): {baseline_s:.2f} s", flush=True)
        ours_s, report = timed(ours)
        print(f"ours (pooled decode overlapped with batched inference, captions written): {ours_s:.2f} s", flush=True)
        assert not report.skipped and len(report.tagged) == len(paths)  # type: ignore[attr-defined]

    vs_baseline, vs_pure = ours_s / baseline_s, ours_s / pure_s
    print(f"decode+preprocess alone, one thread: {prepare_s:.2f} s ({prepare_s / len(paths) * 1000:.0f} ms/image)")
    print(f"ours / baseline = {vs_baseline:.2f} (target <= 0.5); ours / pure inference = {vs_pure:.2f} (target <= 1.2)")
    print(
        f"RESULT images={len(paths)} depth={args.depth} batch={args.batch_size} cpus={os.cpu_count()} "
        f"ours_s={ours_s:.2f} baseline_s={baseline_s:.2f} pure_s={pure_s:.2f} preprocess_s={prepare_s:.2f} "
        f"ours_ips={len(paths) / ours_s:.2f} ours_vs_baseline={vs_baseline:.2f} ours_vs_pure={vs_pure:.2f} "
        f"target_baseline={'met' if vs_baseline <= 0.5 else 'missed'} target_pure={'met' if vs_pure <= 1.2 else 'missed'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
