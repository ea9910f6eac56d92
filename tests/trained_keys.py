"""The key sets of trained files, per family, UNet naming and network kind.

``python tests/trained_keys.py`` writes ``tests/data/trained_keys/*.json`` (sorted key
lists); ``test_trained_keys.py`` checks that today's trainer still writes exactly those
keys. The lists were produced by the trainer before the loader and the trainer shared
one name map, so a change to the name maths that renames a trained module fails there.

SD2 on the diffusers host: the standalone app builds SD2 pipelines with SD1's UNet
topology (``_pipeline_family`` tells them by the cross-attention width only), so the tiny
SD1 pipeline trained as family ``sd2`` is the SD2 diffusers case for naming.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data" / "trained_keys"
# (host naming, family, tiny model to build)
HOSTS = (
    ("ldm", "sd1", "sd1"),
    ("ldm", "sd2", "sd2"),
    ("ldm", "sdxl", "sdxl"),
    ("diffusers", "sd1", "sd1"),
    ("diffusers", "sd2", "sd1"),
    ("diffusers", "sdxl", "sdxl"),
)
NETWORKS = ("lora", "locon")
TEXT_ENCODER = (True, False)


def case_name(naming: str, family: str, network: str, text_encoder: bool) -> str:
    return f"{naming}-{family}-{network}-{'unet_te' if text_encoder else 'unet'}"


def trained_keys(parts, family: str, network: str, text_encoder: bool) -> list[str]:
    """The tensor names a training of ``network`` on ``parts`` saves, sorted."""
    from lora_ext.training.network import NetworkSpec, build_network

    spec = NetworkSpec(
        rank=2, alpha=1.0, conv_rank=2 if network == "locon" else 0, conv_alpha=1.0, train_text_encoder=text_encoder
    )
    return sorted(build_network(parts, family, spec).kohya_state_dict())


def tiny_parts(naming: str, model: str, tokenizer_dir: Path):
    """The trainable parts of a tiny ldm model or tiny diffusers pipeline."""
    if naming == "ldm":
        import torch
        from tiny_models import TinySdModel

        from lora_ext.hosts.ldm import LdmHost

        torch.manual_seed(1234)
        return LdmHost(TinySdModel(model, tokenizer_dir), lora_dir=tokenizer_dir / "Lora").parts()
    from lora_ext.demo import build_tiny_pipeline
    from lora_ext.hosts.standalone import StandaloneHost

    return StandaloneHost(build_tiny_pipeline(model), name="tiny", lora_dir=tokenizer_dir / "Lora").parts()


def expected(case: str) -> list[str]:
    return json.loads((DATA / f"{case}.json").read_text(encoding="utf-8"))


def main() -> None:
    import os
    import tempfile

    DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["TRAIN_TOOLS_HOME"] = scratch
        os.environ["HF_HUB_OFFLINE"] = "1"
        from lora_ext.demo import write_tiny_clip_tokenizer

        tokenizer_dir = write_tiny_clip_tokenizer(Path(scratch))
        for naming, family, model in HOSTS:
            parts = tiny_parts(naming, model, tokenizer_dir)
            for network in NETWORKS:
                for text_encoder in TEXT_ENCODER:
                    case = case_name(naming, family, network, text_encoder)
                    keys = trained_keys(parts, family, network, text_encoder)
                    (DATA / f"{case}.json").write_text(json.dumps(keys, indent=0) + "\n", encoding="utf-8")
                    print(case, len(keys))


if __name__ == "__main__":
    sys.path[:0] = [str(TESTS), str(TESTS.parent)]
    main()
