"""The onnxruntime session: contract read from the model, providers, fallback, unload, versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx_tagger_fixture import INPUT_NAME, OUTPUT_NAME, build_tiny_tagger, expected_probabilities, tiny_tagger_model

from lora_ext.errors import TaggerUnavailable
from lora_ext.tagger.session import (
    PROVIDER_PREFERENCE,
    choose_providers,
    fallback_warning,
    newer_runtime_needed,
    open_session,
)


@pytest.mark.parametrize("dynamic", [True, False])
def test_input_size_names_and_batch_axis_are_read_from_the_model(tmp_path: Path, dynamic: bool) -> None:
    session = open_session(build_tiny_tagger(tmp_path, dynamic_batch=dynamic) / "model.onnx")
    assert (session.input_name, session.output_name, session.side) == (INPUT_NAME, OUTPUT_NAME, 32)
    assert session.dynamic_batch is dynamic


def test_outputs_are_the_models_probabilities(tmp_path: Path) -> None:
    session = open_session(build_tiny_tagger(tmp_path) / "model.onnx")
    batch = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(session.run(batch), expected_probabilities(batch), atol=1e-5)


def test_providers_are_preferred_gpu_first() -> None:
    assert PROVIDER_PREFERENCE == (
        "CUDAExecutionProvider",
        "ROCMExecutionProvider",
        "DmlExecutionProvider",
        "CoreMLExecutionProvider",
        "CPUExecutionProvider",
    )
    available = ["CPUExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider", "AzureExecutionProvider"]
    assert choose_providers(available) == ["DmlExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["CPUExecutionProvider"], ["CUDAExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_falling_back_to_cpu_is_reported_once(tmp_path: Path) -> None:
    path = build_tiny_tagger(tmp_path) / "model.onnx"
    with pytest.warns(UserWarning):  # onnxruntime's own console warning
        session = open_session(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert session.providers == ("CPUExecutionProvider",)
    assert len(session.warnings) == 1 and "CUDAExecutionProvider" in session.warnings[0]


def test_cpu_by_choice_is_not_a_fallback(tmp_path: Path) -> None:
    session = open_session(build_tiny_tagger(tmp_path) / "model.onnx", providers=["CPUExecutionProvider"])
    assert session.warnings == ()
    assert fallback_warning(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider"]) is None


def test_thread_count_is_passed_to_onnxruntime(tmp_path: Path) -> None:
    session = open_session(build_tiny_tagger(tmp_path) / "model.onnx", threads=1)
    assert session.session.get_session_options().intra_op_num_threads == 1


def test_unloaded_session_refuses_to_run(tmp_path: Path) -> None:
    session = open_session(build_tiny_tagger(tmp_path) / "model.onnx")
    session.unload()
    assert not session.loaded
    with pytest.raises(TaggerUnavailable, match="unloaded"):
        session.run(np.zeros((1, 32, 32, 3), np.float32))


def test_model_with_a_newer_opset_says_which_onnxruntime_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(tiny_tagger_model(opset=40), str(path))
    with pytest.raises(TaggerUnavailable) as caught:
        open_session(path)
    assert "opset 40" in caught.value.one_line()
    assert f"installed: {onnxruntime.__version__}" in caught.value.one_line()


def test_opset_maps_to_the_first_onnxruntime_that_runs_it() -> None:
    message = "ONNX Runtime only *guarantees* support for models stamped with official released onnx opset versions. Opset 18 is under development"
    assert "onnxruntime >= 1.14" in (newer_runtime_needed(message, "1.13.1") or "")
    assert newer_runtime_needed("some other failure", "1.13.1") is None


def test_old_onnxruntime_is_refused_with_the_version_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnxruntime, "__version__", "1.16.3")
    with pytest.raises(TaggerUnavailable, match=r"onnxruntime >= 1\.17; installed: 1\.16\.3"):
        open_session(build_tiny_tagger(tmp_path) / "model.onnx")


def test_truncated_model_file_is_one_line_not_a_crash(tmp_path: Path) -> None:
    path = build_tiny_tagger(tmp_path) / "model.onnx"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(TaggerUnavailable, match="cannot load"):
        open_session(path)


def test_model_that_is_not_nhwc_is_refused(tmp_path: Path) -> None:
    model = tiny_tagger_model()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_value, dims[3].dim_value = 3, 32  # NCHW, as timm exports are
    axes = next(a for a in model.graph.node[0].attribute if a.name == "axes")
    axes.ints[:] = [2, 3]
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    with pytest.raises(TaggerUnavailable, match="NHWC"):
        open_session(path)
