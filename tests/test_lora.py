"""train_mode: lora: which weights train, the adapters start as the identity, errors, and a LoRA
IsoFormer saved and reloaded predicts exactly as before."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from isoformer.constants import DNA_SEQUENCE, PROTEIN_SEQUENCE, RNA_SEQUENCE
from isoformer.encoders.registry import ENCODER_KINDS, build_encoder, encoder_config
from isoformer.errors import IsoformerError
from isoformer.model.config import load_preset
from isoformer.model.isoformer import IsoFormer

# Each kind's adapted modules in its first transformer layer, as the library names them.
FIRST_LAYER_TARGETS = {
    "esm2": ["backbone.encoder.layer.0.attention.self." + name
             for name in ("query", "key", "value")] + [
        "backbone.encoder.layer.0.attention.output.dense"],
    "enformer": [f"model.transformer.0.0.fn.1.{name}" for name in ("to_q", "to_k", "to_v",
                                                                   "to_out")],
}
FIRST_LAYER_TARGETS["nucleotide_transformer"] = FIRST_LAYER_TARGETS["esm2"]
FIRST_LAYER_TARGETS["borzoi"] = FIRST_LAYER_TARGETS["enformer"]


def sequences(kind: str) -> list[str]:
    rng = random.Random(0)
    if kind == "esm2":
        return ["MKTAYIAKQRQISFVKSHFSRQ", "MVHLTPEEK"]
    lengths = {"enformer": (2048, 2048), "borzoi": (1024, 1024)}.get(kind, (40, 21))
    return ["".join(rng.choice("ACGT") for _ in range(length)) for length in lengths]


def adapter_names(prefixes: list[str]) -> set[str]:
    return {f"{prefix}.lora_{part}.default.weight" for prefix in prefixes for part in "AB"}


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_only_the_adapters_train_and_they_start_as_the_identity(kind):
    torch.manual_seed(0)
    plain = build_encoder(encoder_config(kind, "tiny", train_mode="frozen")).eval()
    torch.manual_seed(0)
    lora = build_encoder(encoder_config(kind, "tiny", train_mode="lora", lora_rank=2))
    trainable = {name for name, p in lora.named_parameters() if p.requires_grad}
    first_layer = FIRST_LAYER_TARGETS[kind]
    second_layer = [name.replace(".0.", ".1.", 1) for name in first_layer]
    assert trainable == adapter_names(first_layer + second_layer)  # both tiny layers
    assert lora.get_parameter(next(iter(sorted(trainable)))).shape[0] == 2  # lora_A: [r, in]

    inputs = lora.tokenize(sequences(kind))
    with torch.no_grad():  # lora_B starts at zero: the adapted model is the original one
        torch.testing.assert_close(lora.eval()(inputs).hidden, plain(inputs).hidden,
                                   atol=0, rtol=0)
    lora.train()
    lora(inputs).hidden.square().sum().backward()
    assert {name for name, p in lora.named_parameters() if p.grad is not None} == trainable


def test_layers_after_the_returned_one_get_no_adapters():
    encoder = build_encoder(encoder_config("esm2", "tiny", train_mode="lora", hidden_layer=1))
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == adapter_names(FIRST_LAYER_TARGETS["esm2"])


def test_chosen_targets_and_rank_alpha_dropout_reach_peft():
    encoder = build_encoder(encoder_config(
        "nucleotide_transformer", "tiny", train_mode="lora", lora_target_modules=["value"],
        lora_rank=3, lora_alpha=6.0, lora_dropout=0.25,
    ))
    value = encoder.backbone.encoder.layer[0].attention.self.value
    assert value.scaling["default"] == 2.0  # alpha / r
    assert value.lora_dropout["default"].p == 0.25
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == adapter_names([f"backbone.encoder.layer.{i}.attention.self.value"
                                       for i in (0, 1)])


@pytest.mark.parametrize(("fields", "message"), [
    ({"lora_target_modules": ["qkv"]}, r"lora_target_modules entry 'qkv' names no module .*"
                                       r"their linear layers: dense, key, query, value"),
    ({"lora_target_modules": ["attention"]}, r"'attention' names .*EsmAttention; LoRA adapts "
                                             "linear layers"),
    ({"lora_rank": 0}, "lora_rank must be at least 1"),
    ({"lora_alpha": 0.0}, "lora_alpha must be positive"),
    ({"lora_dropout": 1.0}, r"lora_dropout must be in \[0, 1\)"),
    ({"hidden_layer": 0}, "needs a transformer layer before hidden_layer 0"),
])
def test_bad_lora_settings_are_clear_errors(fields, message):
    with pytest.raises(IsoformerError, match=message):
        build_encoder(encoder_config("esm2", "tiny", train_mode="lora", **fields))


def records(count: int) -> list[dict]:
    rng = random.Random(0)
    return [{
        DNA_SEQUENCE: "".join(rng.choice("ACGT") for _ in range(1024)),
        RNA_SEQUENCE: "".join(rng.choice("ACGT") for _ in range(rng.randint(20, 90))),
        PROTEIN_SEQUENCE: "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY")
                                  for _ in range(rng.randint(0, 30))),
    } for _ in range(count)]


def test_lora_model_saves_and_reloads_to_identical_predictions(tmp_path):
    config = load_preset("tiny").model
    for modality in ("rna", "protein"):
        config.encoders[modality] = dataclasses.replace(
            config.encoders[modality], train_mode="lora", lora_rank=4)
    torch.manual_seed(0)
    model = IsoFormer.from_config(config)
    before = model.predict(records(4))
    with torch.no_grad():  # trained adapters: lora_B away from its zero start
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    expected = model.predict(records(4))
    assert np.abs(expected - before).max() > 1e-3  # the adapters change the predictions
    model.save_pretrained(tmp_path)

    torch.manual_seed(1)  # other random adapters and base weights before loading
    reloaded = IsoFormer.from_pretrained(tmp_path)
    np.testing.assert_array_equal(reloaded.predict(records(4)), expected)
    for modality in ("rna", "protein"):
        encoder = reloaded.encoders[modality]
        assert all("lora_" in name for name, p in encoder.named_parameters() if p.requires_grad)
    assert reloaded.config == model.config
