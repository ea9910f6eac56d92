"""What a run writes besides the final file: intermediate saves, pruning, previews, loss log, validation."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from train_support import make_dataset, tiny_train_config, wake_zero_layers

from lora_ext.config import TrainConfig
from lora_ext.training.events import TrainEvents
from lora_ext.training.network import build_network
from lora_ext.training.run import network_spec, train_lora
from lora_ext.training.save import safetensors_hashes


def outputs_config(dataset, **changes) -> TrainConfig:
    base = tiny_train_config(dataset, alpha=1.0, max_steps=4, unet_lr=1e-3, train_text_encoder=False, save_dtype="fp16")
    return base.replace(**changes)


def test_intermediate_saves_previews_validation_and_pruning(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "data", count=3)
    host = make_ldm_host("sd1")
    sampled, saved = [], []
    events = TrainEvents(on_sample=lambda images, paths: sampled.append(paths), on_saved=saved.append)
    config = outputs_config(
        tmp_path / "data",
        save_every_n_steps=1,
        keep_last_n=2,
        validation_split=0.34,
        validate_every_n_steps=2,
        sample_every_n_steps=2,
        sample_prompts="toy --w 64 --h 64 --s 2 --d 5",
    )
    result = train_lora(host, config, events, out=host.lora_dir / "run.safetensors")
    lora_dir = host.lora_dir
    assert sorted(p.name for p in lora_dir.glob("*.safetensors")) == [
        "run-step00000002.safetensors",
        "run-step00000003.safetensors",
        "run.safetensors",
    ]
    assert [p.name for p in saved] == [
        "run-step00000001.safetensors",
        "run-step00000002.safetensors",
        "run-step00000003.safetensors",
        "run.safetensors",
    ]
    with safe_open(str(lora_dir / "run-step00000002.safetensors"), "pt") as handle:
        assert handle.metadata()["ss_output_name"] == "run-step00000002"
        assert handle.metadata()["ss_steps"] == "2"
        assert handle.metadata()["ss_num_validation_images"] == "1"
    assert len(sampled) == 2 and all(path.is_file() for paths in sampled for path in paths)
    assert (lora_dir / "run.preview.png").is_file()
    rows = result.loss_log.read_text().splitlines()
    assert rows[0].startswith("step,epoch,loss")
    validation = [row.split(",")[-1] for row in rows[1:]]
    assert validation[1] and validation[3] and not validation[0]


def test_hashes_cover_tensor_bytes_only(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "data", count=1)
    host = make_ldm_host("sd1")
    result = train_lora(host, outputs_config(tmp_path / "data", max_steps=1), out=tmp_path / "h.safetensors")
    data = result.path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    with safe_open(str(result.path), "pt") as handle:
        metadata = handle.metadata()
    import hashlib

    assert metadata["sshs_model_hash"] == hashlib.sha256(data[8 + header :]).hexdigest()
    tensors = load_file(str(result.path))
    assert safetensors_hashes(tensors, {"ss_x": "1"})[0] == metadata["sshs_model_hash"]


def test_training_can_start_from_an_existing_lora(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "data", count=1)
    host = make_ldm_host("sd1")
    first = train_lora(
        host, outputs_config(tmp_path / "data", max_steps=2, unet_lr=1e-2), out=tmp_path / "a.safetensors"
    ).path
    config = outputs_config(tmp_path / "data", init_weights=str(first))
    network = build_network(host.parts(), "sd1", network_spec(config))
    assert network.load_kohya_state_dict(load_file(str(first))) == []
    state = load_file(str(first))
    name = next(iter(network.loras))
    assert torch.equal(network.loras[name].up, state[f"{name}.lora_up.weight"].float())
    assert train_lora(host, config, out=tmp_path / "b.safetensors").status == "finished"


def test_bf16_autocast_trains_on_cpu(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "data", count=1)
    result = train_lora(
        make_ldm_host("sd1"),
        outputs_config(tmp_path / "data", max_steps=2, mixed_precision="bf16", save_dtype="bf16"),
        out=tmp_path / "bf.safetensors",
    )
    assert result.status == "finished"
    assert next(iter(load_file(str(result.path)).values())).dtype == torch.bfloat16


def test_host_that_cannot_train_is_refused_with_its_reasons(make_ldm_host, tmp_path):
    from lora_ext.errors import HostUnavailable
    from lora_ext.host import HostCapabilities

    host = make_ldm_host("sd1")
    host.capabilities = lambda: HostCapabilities(can_train=False, reasons=["--lowvram is on"])
    with pytest.raises(HostUnavailable, match="lowvram"):
        train_lora(host, outputs_config(tmp_path), out=tmp_path / "x.safetensors")


def test_host_training_session_wraps_the_run(make_ldm_host, tmp_path):
    import contextlib

    make_dataset(tmp_path / "data", count=1)
    host = make_ldm_host("sd1")
    calls = []

    @contextlib.contextmanager
    def session(config):
        calls.append(("enter", config.rank))
        yield
        calls.append(("exit", host.unet.training))

    host.training_session = session
    train_lora(host, outputs_config(tmp_path / "data", max_steps=1), out=tmp_path / "s.safetensors")
    assert calls == [("enter", 2), ("exit", False)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_with_grad_scaler_on_cuda(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "data", count=1)
    host = make_ldm_host("sd1")
    host.sd_model.to("cuda")
    result = train_lora(
        host,
        outputs_config(tmp_path / "data", max_steps=3, mixed_precision="fp16", gradient_checkpointing=True),
        out=tmp_path / "g.safetensors",
    )
    assert result.status == "finished"


def test_host_checks_refuse_lowvram_fp8_and_alternate_unets_and_limit_medvram():
    from lora_ext.host import training_capabilities

    assert training_capabilities().can_train and not training_capabilities().reasons
    for flags, word in (
        ({"lowvram": True}, "lowvram"),
        ({"fp8_weights": True}, "fp8"),
        ({"alternate_unet": "TRT"}, "TRT"),
    ):
        capabilities = training_capabilities(**flags)
        assert not capabilities.can_train and word in " ".join(capabilities.reasons)
    medvram = training_capabilities(medvram=True)
    assert medvram.can_train and not medvram.can_train_text_encoder and "medvram" in medvram.reasons[0]


def test_medvram_host_refuses_text_encoder_training_but_trains_the_unet(make_ldm_host, tmp_path):
    from lora_ext.errors import ConfigError
    from lora_ext.host import training_capabilities

    make_dataset(tmp_path / "data", count=1)
    host = make_ldm_host("sd1")
    host.capabilities = lambda: training_capabilities(medvram=True)
    with pytest.raises(ConfigError, match="only the UNet"):
        train_lora(host, outputs_config(tmp_path / "data", train_text_encoder=True), out=tmp_path / "m.safetensors")
    assert train_lora(host, outputs_config(tmp_path / "data", max_steps=1), out=tmp_path / "m.safetensors").path


def _pixels(path) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def test_each_saved_file_s_card_is_the_render_of_its_own_weights(make_ldm_host, tmp_path):
    # kohya's names: run-000001 is saved at the end of epoch 1 and its card must be epoch 1's sample, not
    # the one before it (the file used to be saved before that epoch's preview was made).
    make_dataset(tmp_path / "data", count=2)
    host = make_ldm_host("sd1")
    wake_zero_layers(host)  # else no gradient reaches the LoRA and every render is the same
    config = outputs_config(
        tmp_path / "data",
        max_steps=0,
        epochs=3,
        unet_lr=0.05,
        save_every_n_epochs=1,
        sample_every_n_epochs=2,
        sample_prompts="toy --w 64 --h 64 --s 2 --d 5",
    )
    result = train_lora(host, config, out=host.lora_dir / "run.safetensors")
    samples = sorted((result.work_dir / "samples").glob("*.png"))
    # epoch 2 on schedule, then a render of the final weights for the final file (epoch 3 is not on schedule)
    assert [path.name.split("_")[0] for path in samples] == ["e000002", "final"]
    epoch2, final = (_pixels(path) for path in samples)
    assert epoch2 != final  # the weights moved between the two renders: a mixed-up card would show
    lora_dir = host.lora_dir
    assert not (lora_dir / "run-000001.preview.png").exists()  # no render of epoch 1's weights exists
    assert _pixels(lora_dir / "run-000002.preview.png") == epoch2
    assert _pixels(lora_dir / "run.preview.png") == final


def test_metadata_says_unet_only_when_the_text_encoder_rate_is_0_and_counts_samples_as_kohya(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "data", count=3, folder="2_toy")
    make_dataset(tmp_path / "reg", count=2, folder="3_person")
    host = make_ldm_host("sd1")
    config = outputs_config(
        tmp_path / "data", train_text_encoder=True, text_encoder_lr=0.0, reg_dir=str(tmp_path / "reg"), max_steps=1
    )
    path = train_lora(host, config, out=host.lora_dir / "meta.safetensors").path
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
        keys = list(handle.keys())
    assert metadata["ss_network_train_unet_only"] == "True" and metadata["ss_text_encoder_lr"] == "0.0"
    assert not [key for key in keys if key.startswith("lora_te")]  # nothing of the text encoder was trained
    # kohya: training images × repeats, and regularisation images × their own repeats, each on its own
    assert (metadata["ss_num_train_images"], metadata["ss_num_reg_images"]) == ("6", "6")
    assert metadata["ss_num_batches_per_epoch"] == "12"  # 6 samples, and as many regularisation samples
