"""freeze_batchnorm: Enformer's and Borzoi's BatchNorm keep their statistics and weights while the
rest trains, so a training-mode pass normalises exactly as evaluation does."""

from __future__ import annotations

import random

import pytest
import torch

from isoformer.encoders.base import SequenceEncoder, batchnorms
from isoformer.encoders.registry import build_encoder, encoder_config
from isoformer.errors import IsoformerError

WINDOWS = {"enformer": 2048, "borzoi": 1024}


def tiny_without_dropout(kind: str, **fields) -> SequenceEncoder:
    torch.manual_seed(0)
    encoder = build_encoder(encoder_config(kind, "tiny", **fields))
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # Borzoi hard-codes some rates: train and eval differ only in BatchNorm
    with torch.no_grad():  # statistics unlike any batch's, as a trained model has
        for norm in batchnorms(encoder):
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
    return encoder


def inputs(encoder: SequenceEncoder) -> dict:
    rng = random.Random(0)
    window = WINDOWS[encoder.config.kind]
    return encoder.tokenize(["".join(rng.choice("ACGT") for _ in range(window)) for _ in range(3)])


@pytest.mark.parametrize("kind", ["enformer", "borzoi"])
def test_training_pass_keeps_statistics_and_normalises_as_evaluation(kind):
    encoder = tiny_without_dropout(kind, freeze_batchnorm=True).train()
    norms = batchnorms(encoder)
    assert norms and not any(norm.training for norm in norms)
    assert not any(p.requires_grad for norm in norms for p in norm.parameters())
    before = {name: buffer.clone() for name, buffer in encoder.named_buffers()}
    batch = inputs(encoder)

    trained = encoder(batch).hidden
    trained.square().sum().backward()
    assert all(torch.equal(buffer, before[name]) for name, buffer in encoder.named_buffers())
    graded = {name for name, p in encoder.named_parameters() if p.grad is not None}
    assert graded and not any(p.grad is not None for norm in norms for p in norm.parameters())
    assert any(".transformer." in name for name in graded)  # the rest still trains
    with torch.no_grad():
        torch.testing.assert_close(trained.detach(), encoder.eval()(batch).hidden)


@pytest.mark.parametrize("kind", ["enformer", "borzoi"])
def test_without_it_training_normalises_by_the_batch(kind):
    """The control: the same encoder without freeze_batchnorm differs between train and eval."""
    encoder = tiny_without_dropout(kind).train()
    batch = inputs(encoder)
    before = batchnorms(encoder)[0].running_mean.clone()
    with torch.no_grad():
        trained = encoder(batch).hidden
        assert not torch.equal(batchnorms(encoder)[0].running_mean, before)
        assert not torch.allclose(trained, encoder.eval()(batch).hidden, atol=1e-3)


def test_freeze_batchnorm_without_batchnorm_is_a_clear_error():
    with pytest.raises(IsoformerError, match="esm2: freeze_batchnorm is set, but esm2 has no"):
        build_encoder(encoder_config("esm2", "tiny", freeze_batchnorm=True))
