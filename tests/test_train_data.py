"""Dataset scanning, captions, buckets, caches and the loss maths."""

from __future__ import annotations

import os
import random

import pytest
import torch
from PIL import Image
from train_support import make_dataset

from lora_ext.app import train_settings
from lora_ext.config import TrainConfig
from lora_ext.dataset.captions import parse_tags
from lora_ext.dataset.files import CaptionStore
from lora_ext.errors import DatasetError
from lora_ext.training import buckets, loss
from lora_ext.training.captions import CaptionOptions, process_caption, tag_frequency, with_trigger
from lora_ext.training.data import build_dataset, folder_counts
from lora_ext.training.plan import make_plan
from lora_ext.training.prompts import parse_sample_prompts


def data_config(root, **changes) -> TrainConfig:
    return TrainConfig(
        dataset_dir=str(root),
        resolution=64,
        min_bucket_reso=32,
        max_bucket_reso=128,
        default_repeats=3,
        train_text_encoder=False,
    ).replace(**changes)


# -- buckets -----------------------------------------------------------------------------------------


def test_buckets_keep_the_area_in_64px_steps():
    found = buckets.make_buckets(512, 256, 1024, 64)
    assert (512, 512) in found and (768, 320) in found and (320, 768) in found
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512 for w, h in found)


def test_images_go_to_the_nearest_aspect_and_are_cover_cropped():
    found = buckets.make_buckets(512, 256, 1024, 64)
    placement = buckets.place((1200, 600), found, 512, 64, no_upscale=False)
    bucket_width, bucket_height = placement.bucket
    assert abs(bucket_width / bucket_height - 2.0) == min(abs(w / h - 2.0) for w, h in found)
    width, height = placement.resized
    assert width >= bucket_width and height >= bucket_height
    assert (width == bucket_width) != (height == bucket_height)  # covers: one side fits, the other overflows
    assert abs(width / height - 2.0) < 0.01
    assert placement.crop_left_top == ((width - bucket_width) // 2, (height - bucket_height) // 2)


def test_no_upscale_keeps_small_images_at_their_own_size():
    placement = buckets.place((200, 130), [(512, 512)], 512, 64, no_upscale=True)
    assert placement.bucket == (192, 128)
    assert placement.resized == (200, 130) or placement.resized[0] >= 192


def test_batches_never_mix_buckets_and_depend_only_on_the_seed():
    sizes = [(64, 64), (128, 32)] * 5
    first = buckets.batches_for_epoch(sizes, 3, seed=5)
    assert first == buckets.batches_for_epoch(sizes, 3, seed=5)
    assert first != buckets.batches_for_epoch(sizes, 3, seed=6)
    assert all(len({sizes[i] for i in batch}) == 1 for batch in first)
    assert sorted(i for batch in first for i in batch) == list(range(10))


# -- captions ----------------------------------------------------------------------------------------


def test_keep_tokens_and_trigger_survive_shuffle_and_tag_dropout():
    options = CaptionOptions(shuffle=True, keep_tokens=1, tag_dropout_rate=0.5, trigger_word="sks")
    caption = "1girl, red hair, smile, outdoors, hat"
    results = {process_caption(caption, options, random.Random(seed)) for seed in range(20)}
    assert len(results) > 1
    assert all(result.startswith("sks, 1girl") for result in results)
    assert caption == "1girl, red hair, smile, outdoors, hat"


def test_caption_dropout_empties_the_caption():
    options = CaptionOptions(caption_dropout_rate=0.5)
    results = [process_caption("a, b", options, random.Random(seed)) for seed in range(40)]
    assert "" in results and "a, b" in results


def test_trigger_word_is_moved_first_not_duplicated():
    assert with_trigger("a, sks, b", "sks") == "sks, a, b"
    assert with_trigger("a, SKS, b, sks", "sks") == "sks, a, b"  # the same tag by the editor's rule
    assert tag_frequency(["A, b", "a"]) == {"a": 2, "b": 1}


def test_sample_prompt_options_are_parsed():
    (prompt,) = parse_sample_prompts("# comment\na cat --n blurry --w 320 --h 256 --s 12 --l 5.5 --d 9", 512, 512, 1)
    assert (
        prompt.prompt,
        prompt.negative_prompt,
        prompt.width,
        prompt.height,
        prompt.steps,
        prompt.cfg_scale,
        prompt.seed,
    ) == ("a cat", "blurry", 320, 256, 12, 5.5, 9)


# -- dataset -----------------------------------------------------------------------------------------


def test_repeat_folders_fallback_captions_and_unreadable_images(make_ldm_host, tmp_path):
    make_dataset(tmp_path, count=2, folder="5_my char")
    make_dataset(tmp_path, count=1, folder="2_other", captions=False)
    make_dataset(tmp_path, count=1, folder="not_a_repeat_folder")
    (tmp_path / "5_my char" / "broken.png").write_bytes(b"\x89PNG not really")
    dataset = build_dataset(make_ldm_host("sd1"), data_config(tmp_path))
    assert {f.name: (f.repeats, f.image_count) for f in dataset.train.folders} == {
        "5_my char": (5, 2),
        "2_other": (2, 1),
    }
    assert [s.path.name for s in dataset.train.skipped] == ["broken.png"]
    assert next(r.caption for r in dataset.records if r.folder == "2_other") == "other"
    assert len(dataset.samples) == 5 * 2 + 2 * 1


def test_regularisation_images_are_cycled_and_weighted(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "train", count=2, folder="2_x")
    make_dataset(tmp_path / "reg", count=1, folder="1_person")
    config = data_config(tmp_path / "train", reg_dir=str(tmp_path / "reg"), prior_loss_weight=0.25)
    dataset = build_dataset(make_ldm_host("sd1"), config)
    assert len(dataset.samples) == 8
    batch = dataset.make_batch([(len(dataset.train.records), False)], random.Random(0))
    assert batch.loss_weights.tolist() == [0.25]


def test_a_two_line_caption_trains_on_all_its_tags(make_ldm_host, tmp_path):
    root = tmp_path / "data"
    make_dataset(root, count=1, folder="2_x")
    (root / "2_x" / "img0.txt").write_bytes("\ufeffsks, red hair\r\nsmile,  outdoors\n".encode())
    dataset = build_dataset(make_ldm_host("sd1"), data_config(root))
    shown_in_editor = CaptionStore(root).load().table.tags("2_x/img0.png")
    (record,) = dataset.records
    assert parse_tags(record.caption) == shown_in_editor == ("sks", "red hair", "smile", "outdoors")
    assert dataset.make_batch([(0, False)], random.Random(0)).captions == ["sks, red hair, smile, outdoors"]
    assert dataset.train.folders[0].tag_frequency == {"sks": 1, "red hair": 1, "smile": 1, "outdoors": 1}


def test_the_ui_step_estimate_is_the_trainers_plan(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "train", count=3, folder="2_x")
    make_dataset(tmp_path / "train", count=2, folder="")  # top level: default repeats
    make_dataset(tmp_path / "reg", count=1, folder="1_person")
    values = {"resolution": 64, "min_bucket_reso": 32, "max_bucket_reso": 128, "default_repeats": 3, "epochs": 2}
    values.update(batch_size=2, gradient_accumulation=2, reg_dir=str(tmp_path / "reg"))
    page, text = train_settings.planned_steps(values, tmp_path / "train")
    config = train_settings.build_config(values, str(tmp_path / "train"), "x")
    dataset = build_dataset(make_ldm_host("sd1"), config)
    trainer = make_plan(config, dataset.counts())
    assert page == trainer  # every count, the regularisation images' included
    assert page.total_steps == 2 * 6  # (3 × 2 + 2 × 3) samples, doubled by the reg images, / batch 2 / accumulation 2
    assert (page.counts.images, page.counts.train_samples, page.counts.reg_images, page.counts.samples) == (
        5,
        12,
        1,
        24,
    )
    assert "5 images × repeats + regularisation = 24 samples × 2 epochs / batch 4 = 12 steps" in text


def test_the_held_out_validation_images_are_counted_alike_by_the_page_and_the_trainer(make_ldm_host, tmp_path):
    make_dataset(tmp_path / "train", count=5, folder="2_x")
    make_dataset(tmp_path / "train", count=3, folder="")
    config = data_config(tmp_path / "train", validation_split=0.3, seed=11, batch_size=3)
    dataset = build_dataset(make_ldm_host("sd1"), config)
    assert folder_counts(config) == dataset.counts()
    assert dataset.counts().validation_images == 2 and dataset.counts().images == 6


def test_empty_dataset_is_a_dataset_error(make_ldm_host, tmp_path):
    (tmp_path / "1_x").mkdir()
    with pytest.raises(DatasetError, match="no readable training images"):
        build_dataset(make_ldm_host("sd1"), data_config(tmp_path))


def test_disk_latent_cache_is_reused_and_invalidated_when_the_image_changes(make_ldm_host, tmp_path):
    make_dataset(tmp_path, count=1, folder="1_x")
    host = make_ldm_host("sd1")
    config = data_config(tmp_path, cache_latents_to_disk=True)
    first = build_dataset(host, config).latent(0, False)[0]
    cache_files = list((tmp_path / "1_x" / ".train-tools-cache").glob("*.safetensors"))
    assert len(cache_files) == 1
    calls = []
    original = host.encode_images
    host.encode_images = lambda pixels, generator=None: calls.append(pixels.shape) or original(pixels, generator)
    again = build_dataset(host, config).latent(0, False)[0]
    assert torch.equal(first, again) and len(calls) == 1  # only the VAE probe, no image encode
    image = tmp_path / "1_x" / "img0.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(image)
    os.utime(image, ns=(1, 1))
    changed = build_dataset(host, config).latent(0, False)[0]
    assert not torch.equal(first, changed) and len(calls) == 3
    resized = build_dataset(host, config.replace(resolution=128)).latent(0, False)[0]
    assert resized.shape[-1] == 16


def test_conditioning_is_cached_only_when_static_and_text_encoder_frozen(make_ldm_host, tmp_path):
    make_dataset(tmp_path, count=1, folder="1_x")
    host = make_ldm_host("sd1")
    assert build_dataset(host, data_config(tmp_path)).cache_conditioning
    assert not build_dataset(host, data_config(tmp_path, train_text_encoder=True)).cache_conditioning
    assert build_dataset(host, data_config(tmp_path, train_text_encoder=True, text_encoder_lr=0.0)).cache_conditioning
    assert not build_dataset(host, data_config(tmp_path, shuffle_caption=True)).cache_conditioning
    dataset = build_dataset(host, data_config(tmp_path))
    batch = dataset.make_batch([(0, False)], random.Random(0))
    assert batch.conditioning is not None
    assert torch.equal(batch.conditioning.crossattn, host.encode_prompts([batch.captions[0]]).crossattn)


def test_alpha_becomes_a_latent_sized_loss_mask(make_ldm_host, tmp_path):
    make_dataset(tmp_path, count=1, folder="1_x", alpha=True)
    dataset = build_dataset(make_ldm_host("sd1"), data_config(tmp_path, masked_loss=True))
    batch = dataset.make_batch([(0, False)], random.Random(0))
    assert batch.masks.shape == (1, 1, 8, 8)
    assert batch.masks[0, 0, :, :4].min() > 0.9 and batch.masks[0, 0, :, 4:].max() < 0.1


def test_sdxl_size_condition_mirrors_the_crop_when_flipped(make_ldm_host, tmp_path):
    make_dataset(tmp_path, count=1, folder="1_x", size=(96, 64))
    dataset = build_dataset(make_ldm_host("sdxl"), data_config(tmp_path, enable_bucket=False))
    record = dataset.records[0]
    plain, flipped = dataset.size_condition(record, False), dataset.size_condition(record, True)
    assert plain.original_size == (64, 96) and plain.target_size == (64, 64)
    assert plain.crop_top_left == (0, 16) and flipped.crop_top_left == (0, 96 - 16 - 64)


# -- loss --------------------------------------------------------------------------------------------


def test_forward_diffusion_and_v_target_follow_the_schedule():
    alphas = torch.linspace(0.99, 0.01, 1000)
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = torch.tensor([10, 900])
    a = alphas[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(loss.add_noise(latents, noise, t, alphas), a.sqrt() * latents + (1 - a).sqrt() * noise)
    torch.testing.assert_close(loss.target(latents, noise, t, alphas, "v"), a.sqrt() * noise - (1 - a).sqrt() * latents)
    assert loss.target(latents, noise, t, alphas, "eps") is noise


def test_min_snr_weights_in_both_forms():
    alphas = torch.tensor([0.9, 0.5, 0.01])
    t = torch.arange(3)
    snr = alphas / (1 - alphas)
    eps = loss.min_snr_weights(t, alphas, 5.0, "eps")
    v = loss.min_snr_weights(t, alphas, 5.0, "v")
    torch.testing.assert_close(eps, (snr.clamp(max=5) / snr).float())
    torch.testing.assert_close(v, (snr.clamp(max=5) / (snr + 1)).float())
    assert eps[0] < 1 and eps[2] == 1


def test_noise_offset_shifts_channel_means_and_masks_weight_the_loss():
    latents = torch.zeros(64, 4, 8, 8)
    plain = loss.sample_noise(latents, torch.Generator().manual_seed(0))
    offset = loss.sample_noise(latents, torch.Generator().manual_seed(0), noise_offset=1.0)
    assert offset.mean(dim=(2, 3)).std() > 3 * plain.mean(dim=(2, 3)).std()
    prediction, target = torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert float(loss.diffusion_loss(prediction, target, torch.ones(1), mask)) == pytest.approx(0.25)
    timesteps = loss.sample_timesteps(1000, torch.Generator().manual_seed(0), 100, 200)
    assert timesteps.min() >= 100 and timesteps.max() < 200
