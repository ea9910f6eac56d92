"""Safe reading of LoRA files and checkpoints.

Only ``.safetensors`` is read; its header is validated first (length, JSON,
offsets inside the file) so a truncated or malformed file gives one clear
``FileFormatError`` instead of a crash deep in a C extension. Legacy pickles
(``.pt``/``.ckpt``) are refused by name and never opened: even torch's
weights-only loading runs an unpickler over a file a user may have been handed.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from lora_ext.errors import FileFormatError

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".ckpt", ".bin", ".pth")
MAX_HEADER_BYTES = 100 * 1024 * 1024

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute file offsets
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    header_size: int  # bytes of JSON after the 8-byte length
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    @property
    def data_offset(self) -> int:
        return 8 + self.header_size


def unreadable(path: str | os.PathLike[str], error: OSError) -> FileFormatError:
    """The one-line error for a file that cannot be opened or read: removed meanwhile, no permission, I/O error."""
    return FileFormatError(f"{path}: cannot read file ({error.strerror or error})")


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Parse and validate a safetensors header without reading tensor data."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise FileFormatError(f"{path.name}: file is too short to be a safetensors file ({size} bytes)")
            (header_size,) = struct.unpack("<Q", head)
            if header_size > min(MAX_HEADER_BYTES, size - 8):
                raise FileFormatError(
                    f"{path.name}: malformed safetensors header (declared {header_size} bytes, file has {size})",
                    hint="the file is truncated or not a safetensors file",
                )
            raw = handle.read(header_size)
    except OSError as error:
        raise unreadable(path, error) from error
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
    except (UnicodeDecodeError, ValueError) as error:
        raise FileFormatError(f"{path.name}: malformed safetensors header ({error})") from error
    metadata = header.pop("__metadata__", None) or {}
    data_offset = 8 + header_size
    tensors: dict[str, TensorInfo] = {}
    for key, info in header.items():
        try:
            begin, end = (int(v) for v in info["data_offsets"])
            tensor = TensorInfo(
                str(info["dtype"]), tuple(int(s) for s in info["shape"]), data_offset + begin, data_offset + end
            )
        except (KeyError, TypeError, ValueError) as error:
            raise FileFormatError(f"{path.name}: malformed safetensors header entry {key!r}") from error
        if tensor.end > size or tensor.begin > tensor.end:
            raise FileFormatError(
                f"{path.name}: file is truncated (tensor {key!r} ends at byte {tensor.end}, file has {size})",
                hint="download the file again",
            )
        tensors[key] = tensor
    return SafetensorsHeader(header_size, tensors, {str(k): str(v) for k, v in metadata.items()})


def is_safetensors(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in SAFETENSORS_SUFFIXES


def load_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors on the CPU, string metadata) of a LoRA file or checkpoint; a pickle is refused, never opened."""
    path = Path(path)
    if is_safetensors(path):
        return load_tensors(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise FileFormatError(
            f"{path.name}: legacy pickle files (.pt/.ckpt) are never loaded, since a pickle can run code",
            hint="use the .safetensors version of this LoRA",
        )
    raise FileFormatError(
        f"{path.name}: unknown file type {path.suffix or '(none)'}", hint="LoRA files are .safetensors"
    )


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors on the CPU, string metadata) of a safetensors file, whatever its name ends in."""
    path = Path(path)
    header = read_header(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise FileFormatError(f"{path.name}: cannot read safetensors data ({error})") from error
    return tensors, header.metadata


def read_tensor(handle, info: TensorInfo) -> torch.Tensor:
    """One tensor from an open file at the header's offsets (a copy, CPU)."""
    handle.seek(info.begin)
    data = bytearray(handle.read(info.end - info.begin))
    dtype = _DTYPES[info.dtype]
    if not data:
        return torch.empty(info.shape, dtype=dtype)
    return torch.frombuffer(data, dtype=dtype).reshape(info.shape)


def iter_bytes(handle, info: TensorInfo, chunk: int = 16 * 1024 * 1024) -> Iterator[bytes]:
    handle.seek(info.begin)
    remaining = info.end - info.begin
    while remaining > 0:
        block = handle.read(min(chunk, remaining))
        if not block:
            raise FileFormatError("file ended while copying tensor data (truncated?)")
        remaining -= len(block)
        yield block


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """Little-endian raw bytes of a CPU tensor (bf16 included)."""
    flat = tensor.detach().contiguous().cpu().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def dtype_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES[dtype]


def torch_dtype(name: str) -> torch.dtype:
    return _DTYPES[name]
