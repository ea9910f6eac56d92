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
