"""Cross-attention and concatenation on plain tensors: shapes, masks, missing modalities."""

import pytest
import torch

from isoformer.encoders.base import EncoderOutput
from isoformer.errors import IsoformerError
from isoformer.model.aggregation import (
    ConcatenationAggregator,
    CrossAttentionAggregator,
    build_aggregator,
)
from isoformer.model.config import AggregationConfig

DIMS = {"dna": 8, "rna": 12, "protein": 4}
LENGTHS = {"dna": 5, "rna": 7, "protein": 3}


def make_embeddings(batch: int = 3, seed: int = 0) -> dict[str, EncoderOutput]:
    generator = torch.Generator().manual_seed(seed)
    embeddings = {}
    for m, dim in DIMS.items():
        hidden = torch.randn(batch, LENGTHS[m], dim, generator=generator)
        mask = torch.ones(batch, LENGTHS[m], dtype=torch.bool)
        embeddings[m] = EncoderOutput(hidden=hidden, mask=mask)
    embeddings["rna"].mask[1, 4:] = False  # row 1: shorter RNA
    return embeddings


def all_present(batch: int = 3) -> dict[str, torch.Tensor]:
    return {m: torch.ones(batch, dtype=torch.bool) for m in DIMS}


def aggregator(query: str = "all", layers: int = 1, modalities=DIMS) -> CrossAttentionAggregator:
    torch.manual_seed(0)
    config = AggregationConfig(num_heads=2, num_layers=layers, query_modalities=query)
    return CrossAttentionAggregator(config, {m: DIMS[m] for m in modalities})


@pytest.mark.parametrize("query, expected", [("all", ["dna", "rna", "protein"]), ("dna", ["dna"])])
def test_shapes_and_query_modalities(query, expected):
    model = aggregator(query)
    out = model(make_embeddings(), all_present(), output_attentions=True)
    assert list(out.fused) == expected
    for m in expected:
        assert out.fused[m].hidden.shape == (3, LENGTHS[m], DIMS[m])
    assert model.output_dims == {m: DIMS[m] for m in expected}
    # DNA-only queries attend to RNA then protein: 2 blocks per layer, in that order.
    if query == "dna":
        assert list(model.layers[0]) == ["dna_to_rna", "dna_to_protein"]
        assert list(out.attentions) == ["dna->rna", "dna->protein"]
    else:
        assert len(model.layers[0]) == 6
    weights = out.attentions["dna->rna"][0]
    assert weights.shape == (3, 2, LENGTHS["dna"], LENGTHS["rna"])
    # Attention sums to 1 over keys and never lands on RNA padding.
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, LENGTHS["dna"]))
    assert weights[1, :, :, 4:].abs().max() == 0


def test_fusion_changes_queries_and_padding_does_not_matter():
    model = aggregator()
    embeddings = make_embeddings()
    out = model(embeddings, all_present())
    assert not torch.allclose(out.fused["dna"].hidden, embeddings["dna"].hidden)
    # Changing RNA padding values leaves every valid output token unchanged.
    embeddings["rna"].hidden[1, 4:] = 1e4
    again = model(embeddings, all_present())
    for m in DIMS:
        valid = out.fused[m].mask
        torch.testing.assert_close(again.fused[m].hidden[valid], out.fused[m].hidden[valid])


@pytest.mark.parametrize("query", ["all", "dna"])
@pytest.mark.parametrize("how", ["present_false", "all_padding"])
def test_missing_protein_row_equals_model_without_protein(query, how):
    full = aggregator(query, layers=2)
    embeddings = make_embeddings()
    present = all_present()
    if how == "present_false":
        present["protein"][2] = False
        embeddings["protein"].mask[2] = False  # an empty protein: <cls>/<eos> only, all masked
    else:
        embeddings["protein"].mask[2] = False  # all-padding row, flag left True
    for m in DIMS:
        embeddings[m].hidden.requires_grad_(True)
    out = full(embeddings, present, output_attentions=True)

    # Same weights without the protein modality at all.
    reduced = aggregator(query, layers=2, modalities=("dna", "rna"))
    reduced_state = {k: v for k, v in full.state_dict().items() if "protein" not in k}
    reduced.load_state_dict(reduced_state)
    without = reduced({m: embeddings[m] for m in ("dna", "rna")},
                      {m: present[m] for m in ("dna", "rna")})
    for m in without.fused:
        torch.testing.assert_close(out.fused[m].hidden[2], without.fused[m].hidden[2])
        # Rows with a protein do see it.
        assert not torch.allclose(out.fused[m].hidden[0], without.fused[m].hidden[0])
    assert out.attentions["dna->protein"][0][2].abs().max() == 0
    if query == "all":
        assert not out.fused["protein"].mask[2].any()

    loss = sum(o.hidden.sum() for o in out.fused.values())
    loss.backward()
    for m in DIMS:
        assert torch.isfinite(embeddings[m].hidden.grad).all()
    for name, parameter in full.named_parameters():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all(), name


def test_whole_batch_without_protein_has_no_nan():
    model = aggregator()
    embeddings = make_embeddings()
    embeddings["protein"].mask[:] = False
    present = all_present()
    present["protein"][:] = False
    out = model(embeddings, present)
    for m in DIMS:
        assert torch.isfinite(out.fused[m].hidden).all()
    assert not out.fused["protein"].mask.any()


def test_single_modality_is_passed_through():
    model = aggregator(modalities=("rna",))
    embeddings = make_embeddings()
    out = model({"rna": embeddings["rna"]}, {"rna": all_present()["rna"]})
    torch.testing.assert_close(out.fused["rna"].hidden, embeddings["rna"].hidden)
    assert sum(p.numel() for p in model.parameters()) == 0


def test_configuration_errors():
    with pytest.raises(IsoformerError, match="heads do not divide"):
        CrossAttentionAggregator(AggregationConfig(num_heads=3), DIMS)
    with pytest.raises(IsoformerError, match="needs the dna modality"):
        CrossAttentionAggregator(AggregationConfig(num_heads=2, query_modalities="dna"),
                                 {"rna": 12, "protein": 4})
    with pytest.raises(IsoformerError, match="query_modalities=all"):
        ConcatenationAggregator(AggregationConfig(kind="linear", query_modalities="dna"), DIMS)


def test_concatenation_passes_embeddings_and_masks_missing_rows():
    model = build_aggregator(AggregationConfig(kind="linear"), DIMS)
    embeddings = make_embeddings()
    present = all_present()
    present["protein"][0] = False
    out = model(embeddings, present)
    assert list(out.fused) == ["dna", "rna", "protein"]
    assert out.fused["rna"].hidden is embeddings["rna"].hidden
    assert not out.fused["protein"].mask[0].any() and out.fused["protein"].mask[1:].all()
