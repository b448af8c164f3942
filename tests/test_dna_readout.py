"""benchmarks/dna_readout.py: the promoter region as window fractions, and each pooling on a
hand-made trunk output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import dna_readout  # noqa: E402


def test_promoter_region_as_fractions_of_a_centred_window(tmp_path):
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"rules": {"promoter_region": [-380, -40]}}))
    # The TSS is base 512 of a 1,024-bp window: bases 132 .. 472.
    assert dna_readout.promoter_region(truth, 1024) == (132 / 1024, 472 / 1024)


class FixedTrunk(nn.Module):
    """Returns the same hidden states [1, 4, 1] whatever the input."""

    dim = 1

    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values).view(1, -1, 1)

    def forward(self, one_hot):
        return self.values


@pytest.mark.parametrize("pool, span, expected", [
    ("mean", (0.0, 1.0), 4.0),  # mean(1, 9, 2, 4)
    ("max", (0.0, 1.0), 9.0),
    ("max", (0.5, 1.0), 4.0),  # positions 2 and 3 only
    ("gated", (0.0, 1.0), 4.5),  # every gate at sigmoid(0) = 0.5
])
def test_pooling_over_the_span(pool, span, expected):
    readout = dna_readout.Readout(FixedTrunk([1.0, 9.0, 2.0, 4.0]), pool, span, tissues=1)
    readout.eval()
    with torch.no_grad():
        readout.head[-1].weight.fill_(1.0)
        readout.head[-1].bias.zero_()
        assert readout(torch.zeros(1, 8, 4)).item() == pytest.approx(expected)


def test_mean_r2_known_values():
    observed = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    # Tissue 0 predicted exactly (R2 1); tissue 1 predicted by its mean (R2 0).
    assert dna_readout.mean_r2(torch.tensor([[1.0, 1.0], [3.0, 1.0]]), observed) == 0.5
