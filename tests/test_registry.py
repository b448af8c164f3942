"""Registry: kinds to classes, presets, and the offline error of every pretrained loader."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import torch
import transformers.utils.hub

from isoformer.encoders.base import EncoderConfig
from isoformer.encoders.borzoi import BorzoiEncoder
from isoformer.encoders.enformer import EnformerEncoder
from isoformer.encoders.esm import EsmEncoder
from isoformer.encoders.nucleotide_transformer import NucleotideTransformerEncoder
from isoformer.encoders.registry import (
    ENCODER_KINDS,
    build_encoder,
    encoder_architecture,
    encoder_config,
)
from isoformer.errors import IsoformerError


@pytest.mark.parametrize(
    ("kind", "encoder_class", "output_dim"),
    [
        ("nucleotide_transformer", NucleotideTransformerEncoder, 32),
        ("esm2", EsmEncoder, 32),
        ("enformer", EnformerEncoder, 96),
    ],
)
def test_tiny_configs_build_the_right_class(kind, encoder_class, output_dim):
    encoder = build_encoder(encoder_config(kind, "tiny", train_mode="frozen"))
    assert type(encoder) is encoder_class and encoder.output_dim == output_dim
    assert encoder.config.train_mode == "frozen"


def test_borzoi_tiny_builds_on_its_short_window():
    encoder = build_encoder(encoder_config("borzoi", "tiny"))
    assert type(encoder) is BorzoiEncoder and encoder.max_length == 1024


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(IsoformerError, match="unknown encoder kind 'esm3'.*esm2, enformer"):
        build_encoder(EncoderConfig(kind="esm3"))  # type: ignore[arg-type]
    with pytest.raises(IsoformerError, match="unknown preset size 'huge'"):
        encoder_architecture("esm2", "huge")


def test_paper_presets_hold_the_published_numbers():
    esm = encoder_architecture("esm2", "paper")
    assert (esm["hidden_size"], esm["num_hidden_layers"], esm["num_attention_heads"]) == (
        640, 30, 20)
    enformer = encoder_architecture("enformer", "paper")
    assert (enformer["dim"], enformer["depth"], enformer["target_length"]) == (1536, 11, 896)
    borzoi = encoder_architecture("borzoi", "paper")
    assert (borzoi["dim"], borzoi["depth"], borzoi["bins_to_return"]) == (1536, 8, 6144)
    nt = encoder_architecture("nucleotide_transformer", "paper")
    assert (nt["hidden_size"], nt["intermediate_size"]) == (768, 3072)
    # A copy: editing it leaves the preset alone.
    esm["hidden_size"] = 1
    assert encoder_architecture("esm2", "paper")["hidden_size"] == 640


def test_every_kind_is_registered():
    assert set(ENCODER_KINDS) == {"nucleotide_transformer", "esm2", "enformer", "borzoi"}


@pytest.fixture
def offline(monkeypatch):
    """No Hub access, as for a user without internet (HF_HUB_OFFLINE=1)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", True)


@pytest.mark.parametrize(
    ("kind", "checkpoint"),
    [
        ("esm2", "facebook/esm2_t30_150M_UR50D"),
        ("enformer", "EleutherAI/enformer-official-rough"),
        ("borzoi", "johahi/borzoi-replicate-0"),
        ("nucleotide_transformer", "InstaDeepAI/nucleotide-transformer-v2-250m-multi-species"),
    ],
)
def test_pretrained_offline_names_the_id_and_the_local_directory_route(
    offline, tmp_path, monkeypatch, kind, checkpoint
):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing downloaded before
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    config = EncoderConfig(kind=kind, init="pretrained", checkpoint=checkpoint)  # type: ignore[arg-type]
    with pytest.raises(IsoformerError) as error:
        build_encoder(config)
    message = str(error.value)
    assert checkpoint in message and "local directory" in message
    if kind != "nucleotide_transformer":  # NT-v2 has its own loader (its message keeps newlines)
        assert "\n" not in message


@pytest.mark.parametrize(("kind", "model_attribute"), [
    ("esm2", "backbone"), ("enformer", "model"), ("borzoi", "model"),
])
def test_pretrained_loads_a_local_directory(tmp_path, kind, model_attribute):
    """A checkpoint saved in the library's own layout loads back with every tensor in place."""
    torch.manual_seed(0)
    random_encoder = build_encoder(encoder_config(kind, "tiny")).eval()
    # enformer-pytorch's trunk shares its tensors with named stages, which safetensors refuses;
    # the official Enformer checkpoint is a pytorch_model.bin too.
    getattr(random_encoder, model_attribute).save_pretrained(
        tmp_path, safe_serialization=kind != "enformer"
    )
    loaded = build_encoder(
        encoder_config(kind, "tiny", init="pretrained", checkpoint=str(tmp_path))
    ).eval()
    state, loaded_state = (
        getattr(encoder, model_attribute).state_dict() for encoder in (random_encoder, loaded)
    )
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[key], loaded_state[key]) for key in state)
    sequence = "MKTAYIAKQR" if kind == "esm2" else "ACGT" * (random_encoder.max_length // 4)
    with torch.no_grad():
        expected = random_encoder(random_encoder.tokenize([sequence])).hidden
        torch.testing.assert_close(loaded(loaded.tokenize([sequence])).hidden, expected)


def test_pretrained_from_a_directory_without_weights_is_a_clear_error(tmp_path):
    config = EncoderConfig(kind="esm2", init="pretrained", checkpoint=str(tmp_path))
    with pytest.raises(IsoformerError, match=f"cannot load the checkpoint '{tmp_path}'"):
        build_encoder(config)


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_frozen_parts_stay_in_eval_mode_for_every_kind(kind):
    """The one rule in `SequenceEncoder.train`: frozen parts keep dropout off and BatchNorm
    statistics fixed; parts that train follow train()."""
    frozen = build_encoder(encoder_config(kind, "tiny", train_mode="frozen")).train()
    with_weights = [m for name, m in frozen.named_modules() if name and list(m.parameters())]
    assert with_weights and not any(module.training for module in with_weights)

    last_n = build_encoder(encoder_config(kind, "tiny", train_mode="last_n", trainable_layers=1))
    last_n.train()
    modes = {module.training for name, module in last_n.named_modules()
             if name and list(module.parameters())
             and all(p.requires_grad for p in module.parameters())}
    assert modes == {True}
    assert any(not module.training for module in last_n.modules())
