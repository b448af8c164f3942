"""Head: masked mean and max pooling (hand-computed), DNA pooling window, concatenation order."""

import pytest
import torch

from isoformer.encoders.base import EncoderOutput
from isoformer.errors import IsoformerError
from isoformer.model.config import HeadConfig
from isoformer.model.head import IsoFormerHead, masked_max, masked_mean


def test_masked_mean_known_values():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
                           [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(masked_mean(hidden, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))


def test_masked_max_known_values_and_finite_gradient():
    hidden = torch.tensor([[[1.0, -2.0], [3.0, -4.0], [100.0, 100.0]],
                           [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    pooled = masked_max(hidden, mask)
    # Row 0: the padded 100s are ignored, negatives stay (no clamping at 0); row 1 has no token.
    torch.testing.assert_close(pooled, torch.tensor([[3.0, -2.0], [0.0, 0.0]]))
    pooled.sum().backward()
    expected = torch.zeros(2, 3, 2)
    expected[0, 1, 0] = expected[0, 0, 1] = 1.0  # the argmax of each feature
    torch.testing.assert_close(hidden.grad, expected)


def set_identity(head: IsoFormerHead) -> None:
    """Make the linear layer copy its input: outputs are the pooled features themselves."""
    linear = head.mlp[-1]
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.out_features, linear.in_features))
        linear.bias.zero_()


def test_head_concatenates_in_modality_order_with_dna_window():
    # Given in protein, dna order: the head still concatenates dna first.
    head = IsoFormerHead(HeadConfig(dna_pool_window=(1, 3)), {"protein": 1, "dna": 1}, 2)
    set_identity(head)
    dna = EncoderOutput(hidden=torch.tensor([[[10.0], [1.0], [3.0], [50.0]]]),
                        mask=torch.ones(1, 4, dtype=torch.bool))
    protein = EncoderOutput(hidden=torch.tensor([[[4.0], [6.0]]]),
                            mask=torch.ones(1, 2, dtype=torch.bool))
    out = head({"dna": dna, "protein": protein})
    torch.testing.assert_close(out, torch.tensor([[2.0, 5.0]]))  # mean(1, 3), mean(4, 6)


def test_dna_max_pool_in_window_leaves_other_modalities_mean_pooled():
    head = IsoFormerHead(HeadConfig(dna_pool_window=(1, 3), dna_pool="max"),
                         {"dna": 1, "rna": 1}, 2)
    set_identity(head)
    dna = EncoderOutput(hidden=torch.tensor([[[10.0], [1.0], [3.0], [50.0]]]),
                        mask=torch.ones(1, 4, dtype=torch.bool))
    rna = EncoderOutput(hidden=torch.tensor([[[4.0], [8.0]]]),
                        mask=torch.ones(1, 2, dtype=torch.bool))
    out = head({"dna": dna, "rna": rna})
    torch.testing.assert_close(out, torch.tensor([[3.0, 6.0]]))  # max(1, 3), mean(4, 8)


def test_window_past_the_tokens_is_an_error():
    head = IsoFormerHead(HeadConfig(dna_pool_window=(0, 9)), {"dna": 2}, 3)
    dna = EncoderOutput(hidden=torch.zeros(1, 4, 2), mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(IsoformerError, match="exceeds the 4 DNA tokens"):
        head({"dna": dna})


def test_mlp_head_shape():
    head = IsoFormerHead(HeadConfig(kind="mlp", hidden_dim=5), {"rna": 3, "dna": 2}, 30)
    fused = {m: EncoderOutput(hidden=torch.randn(4, 6, d), mask=torch.ones(4, 6, dtype=torch.bool))
             for m, d in {"rna": 3, "dna": 2}.items()}
    assert head(fused).shape == (4, 30)
    assert head.mlp[1].in_features == 5 and head.mlp[1].out_features == 5
