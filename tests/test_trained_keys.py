"""Trained files keep the key sets the trainer wrote before it shared the loader's name map."""

from __future__ import annotations

import pytest
from trained_keys import HOSTS, NETWORKS, TEXT_ENCODER, case_name, expected, trained_keys


@pytest.mark.parametrize(("naming", "family", "model"), HOSTS)
def test_trained_files_keep_their_key_sets(make_ldm_host, make_standalone_host, naming, family, model):
    host = make_ldm_host(model) if naming == "ldm" else make_standalone_host(model)
    for network in NETWORKS:
        for text_encoder in TEXT_ENCODER:
            case = case_name(naming, family, network, text_encoder)
            assert trained_keys(host.parts(), family, network, text_encoder) == expected(case), case


def _sdxl_named_unet_without_deep_attention():
    """A diffusers UNet trained under SDXL's (sgm) names whose deepest level has no attention."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 32, 32),
        layers_per_block=2,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def test_every_trained_name_is_looked_up_by_the_loader_at_the_module_it_trained():
    from lora_ext.formats.keymap import keymap_for_parts
    from lora_ext.host import ModelParts
    from lora_ext.training.network import NetworkSpec, build_network

    parts = ModelParts(unet=_sdxl_named_unet_without_deep_attention(), text_encoders=(), naming="diffusers")
    network = build_network(parts, "sdxl", NetworkSpec(rank=2, alpha=1.0, conv_rank=2, train_text_encoder=False))
    module_names = {id(module): name for name, module in parts.unet.named_modules()}
    keymap = keymap_for_parts(parts)
    assert "lora_unet_output_blocks_2_1_conv" in network.loras  # up block 0's upsampler: no attention before it
    for target in network.hook_targets:
        found = keymap.lookup(target.lora_name)
        assert found is not None and found.module == module_names[id(target.module)], target.lora_name
