"""Enformer wrapper: trunk shapes on a short window, parity with enformer-pytorch, train modes."""

from __future__ import annotations

import random

import pytest
import torch

from isoformer.encoders.base import CropCounts, EncoderConfig
from isoformer.encoders.enformer import EnformerEncoder
from isoformer.encoders.registry import encoder_config
from isoformer.errors import IsoformerError


def random_dna(length: int, count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("ACGT") for _ in range(length)) for _ in range(count)]


def tiny(**fields) -> EnformerEncoder:
    torch.manual_seed(0)
    return EnformerEncoder(encoder_config("enformer", "tiny", **fields)).eval()


def test_tiny_trunk_shapes_on_a_2kb_window_match_enformer_pytorch():
    encoder = tiny()
    inputs = encoder.tokenize(random_dna(2048, 8))
    assert inputs["one_hot"].shape == (8, 2048, 4)
    output = encoder(inputs)
    # 16-bp bins: 2,048 bp -> 128 bins, centre-cropped to target_length 64; width 2 x 48.
    assert output.hidden.shape == (8, 64, 96) and encoder.output_dim == 96
    assert output.mask.dtype == torch.bool and output.mask.all()
    expected = encoder.model(inputs["one_hot"], return_only_embeddings=True)
    torch.testing.assert_close(output.hidden, expected)


def test_window_shorter_than_target_keeps_all_bins():
    encoder = tiny(max_length=512)  # 32 bins < target_length 64
    assert encoder(encoder.tokenize(random_dna(512, 2))).hidden.shape == (2, 32, 96)


def test_long_windows_are_centre_cropped_and_counted():
    encoder = tiny()
    long = random_dna(2058, 1)[0]  # 10 bp too long: 5 dropped on each side
    exact = encoder.tokenize([long[5:2053]])["one_hot"]
    assert torch.equal(encoder.tokenize([long])["one_hot"], exact)
    assert encoder.crops == CropCounts("bp", seen=2, cropped=1, removed=10)


def test_short_or_unequal_windows_are_clear_errors():
    encoder = tiny()
    with pytest.raises(IsoformerError, match="DNA sequence 1 has 2000 bp, shorter than the 2048"):
        encoder.tokenize(random_dna(2048, 1) + random_dna(2000, 1))
    with pytest.raises(IsoformerError, match=r"expected one-hot DNA windows \[B, 2048, 4\]"):
        encoder({"one_hot": torch.zeros(1, 1024, 4)})
    with pytest.raises(IsoformerError, match="not a multiple of the 16-bp bin"):
        tiny(max_length=2050)


def test_library_checkpointing_switch_points_to_gradient_checkpointing():
    with pytest.raises(IsoformerError, match="use_checkpointing.*gradient_checkpointing: true"):
        tiny(architecture={"preset": "tiny", "use_checkpointing": True})


@pytest.mark.parametrize("num_downsamples", [1, 2])
def test_too_few_downsamplings_are_a_clear_error(num_downsamples):
    # enformer-pytorch divides by zero at 2 and builds a tower of the wrong width at 1.
    with pytest.raises(IsoformerError, match=f"num_downsamples {num_downsamples} is below 3"):
        tiny(architecture={"preset": "tiny", "num_downsamples": num_downsamples})


def test_hidden_layer_selects_transformer_states():
    sequences = random_dna(2048, 2)
    conv = tiny(hidden_layer=0)
    layer_2 = tiny(hidden_layer=2)
    trunk = tiny(hidden_layer=-1)
    inputs = trunk.tokenize(sequences)
    model = trunk.model
    x = model.conv_tower(model.stem(inputs["one_hot"].transpose(1, 2))).transpose(1, 2)
    torch.testing.assert_close(conv(inputs).hidden, model.crop_final(x))
    torch.testing.assert_close(layer_2(inputs).hidden, model.crop_final(model.transformer(x)))
    assert conv.output_dim == layer_2.output_dim == 48
    with pytest.raises(IsoformerError, match="hidden_layer 4 is out of range"):
        tiny(hidden_layer=4)


def test_frozen_encoder_gets_no_gradients_and_keeps_batchnorm_statistics():
    encoder = tiny(train_mode="frozen").train()
    statistics = [m.running_mean.clone() for m in encoder.modules()
                  if isinstance(m, torch.nn.BatchNorm1d)]
    output = encoder(encoder.tokenize(random_dna(2048, 4)))
    assert not output.hidden.requires_grad
    after = [m.running_mean for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert all(torch.equal(a, b) for a, b in zip(statistics, after, strict=True))


def test_last_n_trains_last_transformer_layer_and_pointwise_only():
    encoder = tiny(train_mode="last_n", trainable_layers=1).train()
    output = encoder(encoder.tokenize(random_dna(2048, 2)))
    output.hidden.sum().backward()
    trained = {name.split(".")[1] + "." + name.split(".")[2]
               for name, p in encoder.named_parameters() if p.grad is not None}
    assert trained == {"transformer.1", "final_pointwise.1"}
    assert encoder.model.stem.training is False and encoder.model.transformer[1].training


def test_paper_config_builds_with_reduced_depth():
    """Full width (dim 1,536 -> trunk 3,072, 128-bp bins, 896 target bins), depth cut to 1."""
    config = EncoderConfig(
        kind="enformer", architecture={"preset": "paper", "depth": 1}, max_length=128 * 8,
    )
    encoder = EnformerEncoder(config).eval()
    assert encoder.output_dim == 3072 and encoder.model.config.target_length == 896
    assert encoder.bin_size == 128
    with torch.no_grad():
        output = encoder(encoder.tokenize(random_dna(1024, 1)))
    assert output.hidden.shape == (1, 8, 3072)
