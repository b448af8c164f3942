"""gradient_checkpointing: the same outputs, gradients and BatchNorm statistics as a plain pass,
with each checkpointed stage run twice (forward and recomputation), and only when training."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from isoformer.encoders.base import SequenceEncoder
from isoformer.encoders.registry import ENCODER_KINDS, build_encoder, encoder_config


def sequences(kind: str) -> list[str]:
    rng = random.Random(0)
    if kind == "esm2":
        return ["MKTAYIAKQRQISFVKSHFSRQ", "MVHLTPEEK"]
    if kind in ("enformer", "borzoi"):  # one fixed window
        length = {"enformer": 2048, "borzoi": 1024}[kind]
        return ["".join(rng.choice("ACGT") for _ in range(length)) for _ in range(2)]
    return ["".join(rng.choice("ACGT") for _ in range(length)) for length in (40, 21)]


def watched_stages(encoder: SequenceEncoder) -> list[torch.nn.Module]:
    """A stage before the transformer (where the DNA models hold their memory) and a layer."""
    if encoder.config.kind == "enformer":
        return [encoder.model.stem, encoder.model.transformer[0]]
    if encoder.config.kind == "borzoi":
        return [encoder.model.conv_dna, encoder.model.transformer[0]]
    return [encoder.backbone.encoder.layer[0]]


@contextmanager
def count_forward_calls(stages: list[torch.nn.Module]) -> Iterator[list[int]]:
    """Counts of each stage's `forward` runs (forward hooks do not fire on recomputation)."""
    calls = [0] * len(stages)
    for index, stage in enumerate(stages):
        def counted(*args, index=index, forward=stage.forward, **kwargs):
            calls[index] += 1
            return forward(*args, **kwargs)
        stage.forward = counted
    try:
        yield calls
    finally:
        for stage in stages:
            del stage.forward


def forward_backward(encoder: SequenceEncoder, inputs: dict) -> tuple:
    """Output, gradients, buffers (BatchNorm statistics) and how often each watched stage ran."""
    stages = watched_stages(encoder)
    with count_forward_calls(stages) as calls:
        torch.manual_seed(1)  # the same dropout draws for both encoders
        hidden = encoder(inputs).hidden
        weights = torch.linspace(-1, 1, hidden.numel()).view_as(hidden)
        (hidden * weights).sum().backward()
    gradients = {name: p.grad for name, p in encoder.named_parameters() if p.grad is not None}
    return hidden.detach(), gradients, dict(encoder.named_buffers()), calls


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_checkpointed_training_step_equals_the_plain_one(kind):
    torch.manual_seed(0)
    plain = build_encoder(encoder_config(kind, "tiny")).train()
    checkpointed = build_encoder(encoder_config(kind, "tiny", gradient_checkpointing=True))
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.train()
    inputs = plain.tokenize(sequences(kind))

    hidden, gradients, buffers, plain_calls = forward_backward(plain, inputs)
    hidden_c, gradients_c, buffers_c, checkpointed_calls = forward_backward(checkpointed, inputs)

    assert plain_calls == [1] * len(plain_calls)
    assert checkpointed_calls == [2] * len(plain_calls)  # recomputed in the backward pass
    torch.testing.assert_close(hidden_c, hidden, atol=0, rtol=0)
    assert gradients_c.keys() == gradients.keys() and len(gradients) > 0
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradients_c[name], gradient, atol=1e-6, rtol=1e-5, msg=name)
    for name, buffer in buffers.items():  # BatchNorm statistics updated once, not twice
        assert torch.equal(buffers_c[name], buffer), name


@pytest.mark.parametrize("kind", ["enformer", "esm2"])
def test_no_recomputation_in_eval_mode_or_without_gradients(kind):
    encoder = build_encoder(encoder_config(kind, "tiny", gradient_checkpointing=True))
    inputs = encoder.tokenize(sequences(kind))
    assert forward_backward(encoder.eval(), inputs)[3] == [1] * len(watched_stages(encoder))
    encoder.train()
    assert encoder.checkpointing
    with torch.no_grad(), count_forward_calls(watched_stages(encoder)) as calls:
        assert not encoder.checkpointing
        assert not encoder(inputs).hidden.requires_grad
    assert calls == [1] * len(calls)
