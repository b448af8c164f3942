"""Attribution: the encoders' input representations, in-silico mutagenesis against hand-set
models, gradient x input against finite differences, spans, targets, files and the CLI."""

from __future__ import annotations

import pytest
import torch

from isoformer.encoders.base import EncoderConfig
from isoformer.encoders.registry import build_encoder, encoder_config

pytestmark = pytest.mark.usefixtures("single_thread")

ENCODER_INPUTS = {
    "enformer": ["ACGTN" * 20 + "ACGTACGTACGT", "GGCCA" * 22 + "TT"],  # 112 bp
    "nucleotide_transformer": ["ACGTACGTACGTAC", "ACGTAACCGGTTNACGT"],
    "esm2": ["MKVLAW", "MCC"],
}


def _frozen(kind: str, **fields) -> torch.nn.Module:
    torch.manual_seed(0)
    size_fields = {"max_length": 96} if kind == "enformer" else {}
    return build_encoder(encoder_config(kind, "tiny", train_mode="frozen",
                                        **{**size_fields, **fields})).eval()


@pytest.mark.parametrize("kind", list(ENCODER_INPUTS))
def test_input_representations_reach_the_input_through_frozen_encoders(kind):
    encoder = _frozen(kind)
    inputs = encoder.tokenize(ENCODER_INPUTS[kind])
    plain = encoder(inputs)
    assert not plain.hidden.requires_grad  # frozen: no graph unless an attribution asks
    with encoder.input_representations() as captured:
        output = encoder(inputs)
    (representation,) = captured
    assert representation.is_leaf and representation.requires_grad
    spans = encoder.token_spans(ENCODER_INPUTS[kind])
    assert representation.shape[:2] == (2, max(len(s) for s in spans))
    width = 4 if kind == "enformer" else encoder.backbone.config.hidden_size
    assert representation.shape[2] == width
    # The same values, now differentiable with respect to the representation.
    torch.testing.assert_close(output.hidden, plain.hidden)
    (gradient,) = torch.autograd.grad(output.hidden.sum(), representation)
    assert gradient.abs().sum() > 0
    # After the block the encoder is as before: nothing captured, no graph.
    assert encoder._captured_inputs is None and not encoder(inputs).hidden.requires_grad


def test_token_spans_of_one_hot_and_residue_encoders_by_hand():
    enformer = _frozen("enformer", max_length=32)
    # A 40-bp window cropped to 32 around its centre keeps bases 20 - 16 = 4 .. 35.
    (spans,) = enformer.token_spans(["A" * 40])
    assert spans.tolist() == [[i, i + 1] for i in range(4, 36)]
    esm = build_encoder(EncoderConfig(kind="esm2", architecture={"preset": "tiny"},
                                      max_length=4, crop="start"))
    short, long = esm.token_spans(["MK", "MKVLA"])
    assert short.tolist() == [[0, 0], [0, 1], [1, 2], [0, 0]]
    assert long.tolist() == [[0, 0], [0, 1], [1, 2], [2, 3], [3, 4], [0, 0]]  # A cropped
    assert esm.tokenize(["MKVLA"])["input_ids"].shape == (1, len(long))
