"""The onnxruntime session of one tagger model.

Providers are tried GPU-first (CUDA → ROCm → DirectML → CoreML → CPU). A GPU
provider that fails to load (a cuDNN 8/9 mismatch, a CPU wheel installed over
the GPU one) makes onnxruntime fall back to CPU without an error, so the
providers the session really got are compared with the ones asked for and the
fallback is reported once, in ``TaggerSession.warnings``.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lora_ext.errors import TaggerUnavailable

PROVIDER_PREFERENCE: tuple[str, ...] = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "CPUExecutionProvider",
)
CPU = "CPUExecutionProvider"
# WD v3 model cards: "ONNX model requires onnxruntime >= 1.17.0".
MIN_ONNXRUNTIME = (1, 17)
# Highest ai.onnx opset each onnxruntime release runs (onnxruntime compatibility table).
_OPSET_SINCE: tuple[tuple[int, str], ...] = (
    (15, "1.10"),
    (16, "1.11"),
    (17, "1.12"),
    (18, "1.14"),
    (19, "1.15"),
    (20, "1.17"),
    (21, "1.18"),
)


def choose_providers(available: Sequence[str], requested: Sequence[str] | None = None) -> list[str]:
    """Providers to ask for, best first: ``requested`` as given, else the preferred available ones."""
    if requested:
        chosen = list(dict.fromkeys(requested))
    else:
        chosen = [p for p in PROVIDER_PREFERENCE if p in available]
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


def fallback_warning(requested: Sequence[str], actual: Sequence[str]) -> str | None:
    """A sentence when a GPU provider was asked for but the session runs on CPU only."""
    wanted_gpu = [p for p in requested if p != CPU]
    if not wanted_gpu or any(p != CPU for p in actual):
        return None
    return (
        f"the tagger runs on CPU: {', '.join(wanted_gpu)} could not be used "
        "(check that only one onnxruntime package is installed and that its CUDA/cuDNN match the ones torch uses)"
    )


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.17.3"`` → ``(1, 17, 3)``; non-numeric parts end the tuple."""
    numbers: list[int] = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        numbers.append(int(digits.group()))
    return tuple(numbers)


def newer_runtime_needed(message: str, installed: str) -> str | None:
    """Explain an onnxruntime load error that means "this model needs a newer onnxruntime"."""
    opset = re.search(r"[Oo]pset (\d+)", message)
    if opset and ("under development" in message or "not supported" in message.lower()):
        number = int(opset.group(1))
        needed = next((version for max_opset, version in _OPSET_SINCE if max_opset >= number), None)
        target = f"onnxruntime >= {needed}" if needed else "a newer onnxruntime"
        return f"this model uses ONNX opset {number}, which needs {target} (installed: {installed})"
    if re.search(r"Unsupported model IR version", message):
        return f"this model's ONNX IR version is newer than onnxruntime {installed} supports; update onnxruntime"
    return None


@dataclass
class TaggerSession:
    """A loaded model: its session plus the input/output facts read from it."""

    session: Any  # onnxruntime.InferenceSession; None once unloaded
    input_name: str
    output_name: str
    side: int
    dynamic_batch: bool
    providers: tuple[str, ...]
    warnings: tuple[str, ...] = field(default=())

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities [N, L] for a float32 BGR batch [N, side, side, 3] (no extra sigmoid)."""
        if self.session is None:
            raise TaggerUnavailable("the tagger model was unloaded", hint="load it again before tagging")
        try:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        except Exception as error:  # noqa: BLE001 - onnxruntime's errors are untyped; report them as one line
            raise TaggerUnavailable(
                f"the tagger model failed on a batch of shape {list(batch.shape)}: {str(error).splitlines()[0][:300]}"
            ) from error

    def unload(self) -> None:
        """Drop the onnxruntime session so its (GPU) memory is freed."""
        self.session = None
        gc.collect()

    @property
    def loaded(self) -> bool:
        return self.session is not None


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise TaggerUnavailable(
            "onnxruntime is not installed",
            hint="install exactly one of onnxruntime, onnxruntime-gpu or onnxruntime-directml (>= 1.17)",
        ) from error
    return onnxruntime


def open_session(model_path: Path, providers: Sequence[str] | None = None, threads: int | None = None) -> TaggerSession:
    """Load ``model_path`` with the best available providers; ``threads`` sets intra-op threads."""
    ort = _import_onnxruntime()
    installed = ort.__version__
    if version_tuple(installed) < MIN_ONNXRUNTIME:
        raise TaggerUnavailable(
            f"WD tagger models need onnxruntime >= {'.'.join(map(str, MIN_ONNXRUNTIME))}; installed: {installed}",
            hint="upgrade the onnxruntime package you have (do not install a second flavour beside it)",
        )
    options = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise TaggerUnavailable(f"thread count must be at least 1, got {threads}")
        options.intra_op_num_threads = threads
    # Decode threads share the CPU with inference; spinning intra-op threads would starve them.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    requested = choose_providers(ort.get_available_providers(), providers)
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=requested)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped Fail/InvalidGraph errors
        reason = newer_runtime_needed(str(error), installed)
        raise TaggerUnavailable(
            reason or f"onnxruntime cannot load {model_path}: {str(error).splitlines()[0][:300]}",
            hint=None if reason else "the file may be incomplete; delete it so it is downloaded again",
        ) from error
    return describe_session(session, requested)


def describe_session(session: Any, requested: Sequence[str]) -> TaggerSession:
    """Read the NHWC input size, names and batch axis from a session and check the contract."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = list(inputs[0].shape)
    if len(inputs) != 1 or len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or shape[1] != shape[2]:
        raise TaggerUnavailable(
            f"not a WD tagger model: expected one NHWC input [N, S, S, 3], got {shape}",
        )
    actual = tuple(session.get_providers())
    warning = fallback_warning(requested, actual)
    return TaggerSession(
        session=session,
        input_name=inputs[0].name,
        output_name=outputs[0].name,
        side=int(shape[1]),
        dynamic_batch=not isinstance(shape[0], int) or shape[0] < 1,
        providers=actual,
        warnings=(warning,) if warning else (),
    )
