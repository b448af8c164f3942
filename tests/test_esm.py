"""ESM-2 wrapper: parity with transformers' EsmModel, masks, empty proteins, crops, train modes."""

from __future__ import annotations

import logging

import pytest
import torch

from isoformer.encoders.base import CropCounts, EncoderConfig
from isoformer.encoders.esm import ESM2_PRESETS, EsmEncoder
from isoformer.encoders.registry import encoder_config
from isoformer.errors import IsoformerError

PROTEINS = ["MKTAYIAKQR", "MVHLTPEEKSAVTALWGKVNVD", "ACDEFGHIKLMNPQRSTVWY"]


def tiny(**fields) -> EsmEncoder:
    torch.manual_seed(0)
    return EsmEncoder(encoder_config("esm2", "tiny", **fields)).eval()


def test_matches_transformers_esm_model_at_every_layer():
    for hidden_layer, state in ((-1, 2), (1, 1), (0, 0)):
        encoder = tiny(hidden_layer=hidden_layer)
        inputs = encoder.tokenize(PROTEINS)
        output = encoder(inputs)
        reference = encoder.backbone(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"].long(),
            output_hidden_states=True,
        )
        expected = reference.hidden_states[state]
        if state == 2:
            assert torch.equal(expected, reference.last_hidden_state)
        mask = output.mask
        torch.testing.assert_close(output.hidden[mask], expected[mask], atol=1e-5, rtol=1e-5)


def test_mask_covers_residues_only_and_empty_protein_is_all_false():
    encoder = tiny()
    inputs = encoder.tokenize(["MKT", "", "MA"])
    # <cls> M K T <eos> / <cls> <eos> <pad> <pad> <pad> / <cls> M A <eos> <pad>
    assert inputs["input_ids"].tolist() == [
        [0, 20, 15, 11, 2], [0, 2, 1, 1, 1], [0, 20, 5, 2, 1],
    ]
    output = encoder(inputs)
    assert output.hidden.shape == (3, 5, 32)
    assert output.mask.tolist() == [
        [False, True, True, True, False],
        [False, False, False, False, False],
        [False, True, True, False, False],
    ]


def test_padding_never_changes_a_protein_embedding():
    encoder = tiny()
    alone = encoder(encoder.tokenize([PROTEINS[0]]))
    batch = encoder(encoder.tokenize(PROTEINS))  # padded to the longest
    n = alone.mask.sum().item()
    torch.testing.assert_close(
        batch.hidden[0][batch.mask[0]], alone.hidden[0][alone.mask[0]], atol=1e-5, rtol=1e-5
    )
    assert batch.mask[0].sum().item() == n == len(PROTEINS[0])


def test_long_protein_keeps_its_n_terminus_and_is_counted_without_a_log_line(caplog):
    encoder = tiny(max_length=5)
    with caplog.at_level(logging.INFO, logger="isoformer.encoders"):
        inputs = encoder.tokenize(["MKTAYIAK", "MK", "ACDEFG"])
    # MKTAY (crop 3) / MK / ACDEF (crop 1)
    assert inputs["input_ids"][0].tolist() == [0, 20, 15, 11, 5, 19, 2]
    assert inputs["input_ids"][2].tolist() == [0, 5, 23, 13, 9, 18, 2]
    assert encoder.crops == CropCounts("residues", seen=3, cropped=2, removed=4)
    assert "cropped" not in caplog.text  # logged once per epoch or prediction run, not per batch
    assert tiny(max_length=5, crop="end").tokenize(["MKTAYIAK"])["input_ids"][0].tolist() == [
        0, 5, 19, 12, 5, 15, 2,
    ]


def test_default_limit_is_1024_residues():
    assert tiny().max_length == 1024
    with pytest.raises(IsoformerError, match="max_length 2000"):
        tiny(max_length=2000)


def test_frozen_encoder_gets_no_gradients():
    encoder = tiny(train_mode="frozen").train()
    output = encoder(encoder.tokenize(PROTEINS))
    assert not output.hidden.requires_grad
    assert not any(p.requires_grad for p in encoder.parameters())


def test_last_n_trains_only_the_last_layers_and_final_norm():
    encoder = tiny(train_mode="last_n", trainable_layers=1).train()
    output = encoder(encoder.tokenize(PROTEINS))
    output.hidden[output.mask].sum().backward()
    trained = {name for name, p in encoder.named_parameters() if p.grad is not None}
    assert trained and all(
        name.startswith(("backbone.encoder.layer.1.", "backbone.encoder.emb_layer_norm_after"))
        for name in trained
    )
    assert trained == {name for name, p in encoder.named_parameters() if p.requires_grad}


def test_layers_after_the_returned_one_never_train():
    encoder = tiny(train_mode="full", hidden_layer=1)
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert "backbone.embeddings.word_embeddings.weight" in trainable
    assert not any(
        name.startswith(("backbone.encoder.layer.1.", "backbone.encoder.emb_layer_norm_after"))
        for name in trainable
    )


def test_full_mode_trains_embeddings():
    encoder = tiny(train_mode="full").train()
    output = encoder(encoder.tokenize(PROTEINS))
    output.hidden[output.mask].sum().backward()
    assert encoder.backbone.embeddings.word_embeddings.weight.grad is not None


def test_bad_settings_are_clear_errors():
    with pytest.raises(IsoformerError, match="hidden_layer 3"):
        tiny(hidden_layer=3)
    with pytest.raises(IsoformerError, match="trainable_layers must be in 1..2"):
        tiny(train_mode="last_n", trainable_layers=5)
    with pytest.raises(IsoformerError, match="invalid amino acid '\\*' at position 3"):
        tiny().tokenize(["MK*"])


def test_paper_config_builds_with_reduced_depth():
    """ESM-2 150M: width 640, 20 heads, FFN 2,560 (depth cut to 2 to save memory)."""
    config = EncoderConfig(kind="esm2", architecture={"preset": "paper", "num_hidden_layers": 2})
    encoder = EsmEncoder(config).eval()
    model_config = encoder.backbone.config
    assert (model_config.hidden_size, model_config.num_attention_heads,
            model_config.intermediate_size, model_config.max_position_embeddings) == (
        640, 20, 2560, 1026)
    assert ESM2_PRESETS["paper"]["num_hidden_layers"] == 30
    output = encoder(encoder.tokenize(["MKTAYIAK"]))
    assert output.hidden.shape == (1, 10, 640) and encoder.output_dim == 640


def test_sdpa_attention_equals_eager():
    encoder = tiny()
    assert encoder.backbone.config._attn_implementation == "sdpa"
    inputs = encoder.tokenize(PROTEINS)  # padded to the longest
    with torch.no_grad():
        fused = encoder(inputs)
        encoder.backbone.set_attn_implementation("eager")
        eager = encoder(inputs)
    assert torch.equal(fused.mask, eager.mask)
    torch.testing.assert_close(fused.hidden, eager.hidden, atol=1e-5, rtol=1e-5)
