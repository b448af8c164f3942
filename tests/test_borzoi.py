"""Borzoi wrapper: relative positions on short windows (known answer), shapes, masks, train modes.

borzoi-pytorch hard-codes the convolution tower (512 to 1,280 channels), so the tiny encoder runs
the real tower on a 1,024-bp window (about 0.5 s for a batch of 8 on one CPU core).
"""

from __future__ import annotations

import random

import pytest
import torch

from isoformer.encoders.base import EncoderConfig
from isoformer.encoders.borzoi import BORZOI_POSITIONS, BorzoiEncoder, fit_relative_positions
from isoformer.encoders.registry import encoder_config
from isoformer.errors import IsoformerError


def random_dna(length: int, count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("ACGT") for _ in range(length)) for _ in range(count)]


def naive_attention(attention: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Borzoi attention written out: logit(i, j) += (q_i + pos_bias) . rel_k(distance j - i)."""
    from borzoi_pytorch.pytorch_borzoi_transformer import get_positional_embed

    n = x.shape[1]
    # Features of distances -4095 .. 4095 (row = distance + 4095), the official window's table.
    table = get_positional_embed(BORZOI_POSITIONS, BORZOI_POSITIONS, 32, x.device)
    q = attention.to_q(x)[:, None] * attention.scale  # [B, 1, n, dk] (one head)
    k, v = attention.to_k(x)[:, None], attention.to_v(x)[:, None]
    rel_k = attention.to_rel_k(table)  # [8191, dk]
    distance = torch.arange(n)[None, :] - torch.arange(n)[:, None]  # [i, j] = j - i
    rel = rel_k[distance + BORZOI_POSITIONS - 1]  # [n, n, dk]
    logits = (q + attention.rel_content_bias) @ k.transpose(-1, -2)
    logits = logits + torch.einsum("bhid,ijd->bhij", q + attention.rel_pos_bias, rel)
    return attention.to_out((logits.softmax(-1) @ v)[:, 0])


def one_head_attention() -> torch.nn.Module:
    from borzoi_pytorch.pytorch_borzoi_transformer import Attention

    torch.manual_seed(0)
    attention = Attention(4, num_rel_pos_features=32, heads=1, dim_key=2, dim_value=2).eval()
    torch.nn.init.normal_(attention.to_out.weight)  # borzoi-pytorch zero-initialises it
    return attention


def test_library_attention_matches_the_naive_form_at_its_native_length():
    attention = one_head_attention()
    x = torch.randn(1, BORZOI_POSITIONS, 4)
    with torch.no_grad():
        torch.testing.assert_close(attention(x), naive_attention(attention, x))


def test_fitted_positions_give_the_naive_form_on_short_windows():
    attention = one_head_attention()
    short, long = torch.randn(2, 8, 4), torch.randn(1, 16, 4)
    with torch.no_grad():
        attention(long)  # the library keeps the features of its first call's length
        stale = attention(short)
        fit_relative_positions(attention, 8)
        assert attention.positions.shape == (15, 32)
        torch.testing.assert_close(attention(short), naive_attention(attention, short))
    assert not torch.allclose(stale, naive_attention(attention, short))


def test_fitted_positions_follow_the_module_and_stay_out_of_checkpoints():
    attention = one_head_attention()
    fit_relative_positions(attention, 8)
    assert "positions" not in attention.state_dict()
    assert attention.double().positions.dtype == torch.float64
    with pytest.raises(IsoformerError, match="at most 4096"):
        fit_relative_positions(attention, BORZOI_POSITIONS + 1)


@pytest.fixture(scope="module")
def frozen_tiny() -> BorzoiEncoder:
    torch.manual_seed(0)
    return BorzoiEncoder(encoder_config("borzoi", "tiny", train_mode="frozen")).train()


def test_tiny_shapes_mask_and_no_gradients(frozen_tiny):
    inputs = frozen_tiny.tokenize(random_dna(1030, 8))
    assert inputs["one_hot"].shape == (8, 1024, 4)
    assert (frozen_tiny.crops.cropped, frozen_tiny.crops.removed) == (8, 48)
    output = frozen_tiny(inputs)
    # 32-bp bins: 1,024 bp -> 32 bins of width dim 32.
    assert output.hidden.shape == (8, 32, 32) and frozen_tiny.output_dim == 32
    assert output.mask.all() and not output.hidden.requires_grad
    # Frozen in training mode: BatchNorm uses its stored statistics, so the output is repeatable.
    torch.testing.assert_close(frozen_tiny(inputs).hidden, output.hidden)
    expected = frozen_tiny.model.get_embs_after_crop(inputs["one_hot"].transpose(1, 2))
    torch.testing.assert_close(output.hidden, expected.transpose(1, 2))


def test_stagewise_training_forward_equals_the_library():
    """The wrapper runs get_embs_after_crop's stages itself (to checkpoint them): in training
    (batch statistics, dropout drawn from the same seed) it gives the library's output."""
    torch.manual_seed(0)
    encoder = BorzoiEncoder(encoder_config("borzoi", "tiny")).train()
    inputs = encoder.tokenize(random_dna(1024, 2))
    torch.manual_seed(1)
    ours = encoder(inputs).hidden
    torch.manual_seed(1)
    expected = encoder.model.get_embs_after_crop(inputs["one_hot"].transpose(1, 2))
    torch.testing.assert_close(ours, expected.transpose(1, 2), atol=0, rtol=0)


def test_last_n_trains_last_transformer_layer_and_decoder():
    torch.manual_seed(0)
    encoder = BorzoiEncoder(
        encoder_config("borzoi", "tiny", train_mode="last_n", trainable_layers=1)
    ).train()
    trainable = {name.split(".")[1] for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {"transformer", "horizontal_conv0", "horizontal_conv1",
                         "upsampling_unet1", "separable1", "upsampling_unet0", "separable0"}
    assert not any(p.requires_grad for p in encoder.model.transformer[0].parameters())
    assert encoder.model.res_tower.training is False


def test_bad_settings_are_clear_errors():
    with pytest.raises(IsoformerError, match="only hidden_layer=-1"):
        BorzoiEncoder(encoder_config("borzoi", "tiny", hidden_layer=1))
    with pytest.raises(IsoformerError, match="not a multiple of 128 bp"):
        BorzoiEncoder(encoder_config("borzoi", "tiny", max_length=1000))


@pytest.mark.slow
def test_paper_config_builds_with_reduced_depth():
    """Published widths (dim 1,536, 6,144 centre bins at full window), depth cut to 1."""
    config = EncoderConfig(kind="borzoi", architecture={"preset": "paper", "depth": 1},
                           max_length=2048)
    encoder = BorzoiEncoder(config).eval()
    assert encoder.output_dim == 1536 and encoder.model.config.bins_to_return == 6144
    with torch.no_grad():
        output = encoder(encoder.tokenize(random_dna(2048, 1)))
    assert output.hidden.shape == (1, 64, 1536)
