"""Aggregation kinds on plain tensors (shapes, masks, padding, missing modalities), their typed
configs (tagged union, overrides, legacy `kind: linear`), and a tiny IsoFormer of each kind."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from isoformer.encoders.base import EncoderOutput
from isoformer.errors import IsoformerError
from isoformer.model.aggregation import (
    AGGREGATORS,
    CAbstractorAggregator,
    ConcatenationAggregator,
    CrossAttentionAggregator,
    build_aggregator,
)
from isoformer.model.aggregation.c_abstractor import masked_adaptive_avg_pool
from isoformer.model.config import (
    AGGREGATION_CONFIGS,
    CAbstractorConfig,
    ConcatConfig,
    CrossAttentionConfig,
    HeadConfig,
    LinearProjectionConfig,
    PerceiverConfig,
    aggregation_config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    load_preset,
    model_config_from_dict,
    save_config,
)
from isoformer.model.head import IsoFormerHead
from isoformer.model.isoformer import IsoFormer
from test_model import random_records, tiny_model

DIMS = {"dna": 8, "rna": 12, "protein": 4}
LENGTHS = {"dna": 5, "rna": 7, "protein": 3}
KINDS = list(AGGREGATION_CONFIGS)
QUERY_KINDS = ["cross_attention", "perceiver", "c_abstractor"]  # those with query_modalities
FUSING_KINDS = QUERY_KINDS  # a modality's output depends on the others'
# Small settings per kind for the tensor tests (the common width is 12, the widest input).
SMALL = {
    "cross_attention": {"num_heads": 2},
    "linear": {},
    "concat": {},
    "perceiver": {"num_heads": 2, "num_latents": 4, "num_layers": 2, "ff_mult": 2},
    "c_abstractor": {"num_heads": 2, "num_tokens": 3, "depth": 2, "ff_mult": 2},
}


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
    config = CrossAttentionConfig(num_heads=2, num_layers=layers, query_modalities=query)
    return CrossAttentionAggregator(config, {m: DIMS[m] for m in modalities})


def make(kind: str, query: str = "all", modalities=DIMS, seed: int = 0, **fields):
    """An aggregator of `kind` with the SMALL settings, in eval mode (dropout off)."""
    torch.manual_seed(seed)
    settings = {**SMALL[kind], **fields}
    if query != "all":
        settings["query_modalities"] = query
    return build_aggregator(aggregation_config(kind, **settings),
                            {m: DIMS[m] for m in modalities}).eval()


def output_length(kind: str, modality: str) -> int:
    return {"linear": 1, "perceiver": SMALL["perceiver"]["num_latents"],
            "c_abstractor": SMALL["c_abstractor"]["num_tokens"]}.get(kind, LENGTHS[modality])


def assert_same_valid(first, second) -> None:
    """Two aggregation outputs agree: same masks (extra positions of the longer one masked), the
    same hidden values wherever valid."""
    assert list(first.fused) == list(second.fused)
    for m in first.fused:
        a, b = first.fused[m], second.fused[m]
        length = min(a.mask.shape[1], b.mask.shape[1])
        assert not a.mask[:, length:].any() and not b.mask[:, length:].any(), m
        torch.testing.assert_close(a.mask[:, :length], b.mask[:, :length])
        valid = a.mask[:, :length]
        torch.testing.assert_close(a.hidden[:, :length][valid], b.hidden[:, :length][valid])


# ---- cross-attention specifics ----

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


def test_single_modality_is_passed_through():
    model = aggregator(modalities=("rna",))
    embeddings = make_embeddings()
    out = model({"rna": embeddings["rna"]}, {"rna": all_present()["rna"]})
    torch.testing.assert_close(out.fused["rna"].hidden, embeddings["rna"].hidden)
    assert sum(p.numel() for p in model.parameters()) == 0


def test_concatenation_passes_embeddings_and_masks_missing_rows():
    model = build_aggregator(ConcatConfig(), DIMS)
    assert isinstance(model, ConcatenationAggregator)
    embeddings = make_embeddings()
    present = all_present()
    present["protein"][0] = False
    out = model(embeddings, present)
    assert list(out.fused) == ["dna", "rna", "protein"]
    assert out.fused["rna"].hidden is embeddings["rna"].hidden
    assert not out.fused["protein"].mask[0].any() and out.fused["protein"].mask[1:].all()


# ---- every kind: shapes, head, padding, missing modalities ----

@pytest.mark.parametrize("kind, query", [(k, "all") for k in KINDS]
                         + [(k, "dna") for k in QUERY_KINDS])
def test_shapes_masks_and_the_head_reads_them(kind, query):
    model = make(kind, query)
    out = model(make_embeddings(), all_present(), output_attentions=True)
    expected = ["dna"] if query == "dna" else ["dna", "rna", "protein"]
    assert list(out.fused) == list(model.output_dims) == expected
    for m in expected:
        hidden, mask = out.fused[m].hidden, out.fused[m].mask
        assert hidden.shape == (3, output_length(kind, m), model.output_dims[m])
        assert mask.shape == hidden.shape[:2] and mask.dtype == torch.bool
    if kind in ("cross_attention", "concat"):
        assert model.output_dims == {m: DIMS[m] for m in expected}
        assert not out.fused["rna"].mask[1, 4:].any() if "rna" in out.fused else True
    else:  # brought to the common width (the widest input's by default), every token valid
        assert model.output_dims == {m: 12 for m in expected}
        assert all(o.mask.all() for o in out.fused.values())
    assert isinstance(out.attentions, dict)
    head = IsoFormerHead(HeadConfig(), model.output_dims, 30)
    predictions = head(out.fused)
    assert predictions.shape == (3, 30) and torch.isfinite(predictions).all()
    assert head.mlp[-1].in_features == sum(model.output_dims.values())


@pytest.mark.parametrize("kind", ["perceiver", "c_abstractor"])
def test_token_set_kinds_fuse_and_report_fusion_attention(kind):
    model = make(kind)
    embeddings = make_embeddings()
    present = all_present()
    present["protein"][2] = False
    out = model(embeddings, present, output_attentions=True)
    n = output_length(kind, "dna")
    weights = out.attentions["dna->protein"]
    assert len(weights) == 1 and weights[0].shape == (3, 2, n, n)
    assert weights[0][2].abs().max() == 0  # no weight on a missing protein
    total = sum(out.attentions[f"dna->{k}"][0] for k in DIMS)  # over every key modality
    torch.testing.assert_close(total.sum(-1), torch.ones(3, 2, n))
    # Without fusion layers each modality's set is its own: changing RNA leaves DNA alone.
    alone = make(kind, fusion_layers=0)
    assert not any("fusion" in name for name, _ in alone.named_parameters())
    before = alone(embeddings, all_present()).fused["dna"].hidden
    embeddings["rna"].hidden.normal_()
    torch.testing.assert_close(alone(embeddings, all_present()).fused["dna"].hidden, before)
    fused_before = out.fused["dna"].hidden
    assert not torch.allclose(model(embeddings, present).fused["dna"].hidden, fused_before)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_values_and_appended_padding_do_not_change_the_output(kind):
    model = make(kind)
    embeddings = make_embeddings()
    # Protein with its <cls> and <eos> masked, as ESM-2 gives it: padding inside and at the end.
    embeddings["protein"].mask[:, 0] = False
    embeddings["protein"].mask[0, -1] = False
    out = model(embeddings, all_present())
    # Garbage in every padded position.
    for m, e in embeddings.items():
        e.hidden[~e.mask] = 1e4
    assert_same_valid(model(embeddings, all_present()), out)
    # Padding tokens appended to every modality (garbage values, masked).
    padded = {
        m: EncoderOutput(hidden=torch.cat([e.hidden, torch.full((3, 4, DIMS[m]), -7.0)], 1),
                         mask=torch.cat([e.mask, torch.zeros(3, 4, dtype=torch.bool)], 1))
        for m, e in embeddings.items()
    }
    assert_same_valid(model(padded, all_present()), out)


def garbage_protein_row(embeddings, row: int, seed: int, how: str) -> dict[str, EncoderOutput]:
    """A copy of `embeddings` whose protein tokens in `row` are different random values (and,
    when the row's protein is flagged absent, a random mask as well)."""
    generator = torch.Generator().manual_seed(seed)
    copy = {m: EncoderOutput(e.hidden.clone(), e.mask.clone()) for m, e in embeddings.items()}
    copy["protein"].hidden[row] = 100 * torch.randn(LENGTHS["protein"], DIMS["protein"],
                                                    generator=generator)
    if how == "present_false":
        copy["protein"].mask[row] = torch.rand(LENGTHS["protein"], generator=generator) > 0.5
    return copy


@pytest.mark.parametrize("kind, query", [(k, "all") for k in KINDS]
                         + [(k, "dna") for k in QUERY_KINDS])
@pytest.mark.parametrize("how", ["present_false", "all_padding"])
def test_missing_protein_row_contributes_nothing(kind, query, how):
    full = make(kind, query, **({"num_layers": 2} if kind == "cross_attention" else {}))
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

    # Different garbage in the missing protein row: the same output (the head's included).
    with torch.no_grad():
        garbage = full(garbage_protein_row(embeddings, 2, seed=5, how=how), present)
    assert_same_valid(garbage, out)
    head = IsoFormerHead(HeadConfig(), full.output_dims, 30)
    torch.testing.assert_close(head(garbage.fused)[2], head(out.fused)[2])

    # Same weights without the protein modality at all.
    reduced = make(kind, query, modalities=("dna", "rna"),
                   **({"num_layers": 2} if kind == "cross_attention" else {}))
    reduced_state = {k: v for k, v in full.state_dict().items() if "protein" not in k}
    reduced.load_state_dict(reduced_state)
    without = reduced({m: embeddings[m] for m in ("dna", "rna")},
                      {m: present[m] for m in ("dna", "rna")})
    for m in without.fused:
        torch.testing.assert_close(out.fused[m].hidden[2], without.fused[m].hidden[2])
        torch.testing.assert_close(out.fused[m].mask[2], without.fused[m].mask[2])
        if kind in FUSING_KINDS:  # rows with a protein do see it
            assert not torch.allclose(out.fused[m].hidden[0], without.fused[m].hidden[0])
    if "protein" in out.fused:
        assert not out.fused["protein"].mask[2].any()
    if "dna->protein" in (out.attentions or {}):
        assert out.attentions["dna->protein"][0][2].abs().max() == 0

    loss = sum((o.hidden * o.mask[..., None]).sum() for o in out.fused.values())  # valid only
    loss.backward()
    for m in DIMS:
        grad = embeddings[m].hidden.grad
        assert grad is None or torch.isfinite(grad).all()
    grad = embeddings["protein"].hidden.grad
    assert grad is None or grad[2].abs().max() == 0  # nothing flows from the missing row
    for name, parameter in full.named_parameters():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize("kind", KINDS)
def test_whole_batch_without_protein_has_no_nan(kind):
    model = make(kind).train()
    embeddings = make_embeddings()
    embeddings["protein"].mask[:] = False
    present = all_present()
    present["protein"][:] = False
    out = model(embeddings, present)
    for m in DIMS:
        assert torch.isfinite(out.fused[m].hidden).all()
    assert not out.fused["protein"].mask.any()
    if kind == "concat":  # no parameters, nothing to differentiate
        return
    sum(o.hidden.sum() for o in out.fused.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("kind", KINDS)
def test_single_modality_builds_and_runs(kind):
    model = make(kind, modalities=("rna",))
    embeddings = make_embeddings()
    out = model({"rna": embeddings["rna"]}, {"rna": all_present()["rna"]})
    assert list(out.fused) == ["rna"] and torch.isfinite(out.fused["rna"].hidden).all()


def test_masked_adaptive_pool_equals_torch_on_the_valid_tokens():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 9, 3, generator=generator)
    mask = torch.rand(4, 9, generator=generator) > 0.4
    mask[0] = True
    mask[1] = False
    mask[2, :] = False
    mask[2, [1, 4]] = True  # 2 valid tokens for 4 bins: bins repeat them, as torch does
    for num_tokens in (1, 4, 9):
        pooled = masked_adaptive_avg_pool(hidden, mask, num_tokens)
        assert pooled.shape == (4, num_tokens, 3)
        for row in range(4):
            valid = hidden[row][mask[row]]  # [n, 3]
            if len(valid) == 0:
                assert pooled[row].abs().max() == 0
                continue
            expected = F.adaptive_avg_pool1d(valid.T[None], num_tokens)[0].T
            torch.testing.assert_close(pooled[row], expected)


def test_perceiver_and_c_abstractor_parameter_layout():
    perceiver = make("perceiver")
    assert perceiver.compressors["dna"].latents.shape == (4, 12)
    assert len(perceiver.compressors["dna"].layers) == 2
    assert len(perceiver.fusion.layers) == 1
    abstractor = make("c_abstractor", dim=6, kernel_size=5)
    assert isinstance(abstractor, CAbstractorAggregator)
    assert abstractor.output_dims == {m: 6 for m in DIMS}
    block = abstractor.compressors["protein"].before[0]
    assert block.conv1.kernel_size == (5,) and block.conv1.in_channels == 6
    assert len(abstractor.compressors["protein"].after) == 2


def test_configuration_errors():
    with pytest.raises(IsoformerError, match="heads do not divide"):
        CrossAttentionAggregator(CrossAttentionConfig(num_heads=3), DIMS)
    with pytest.raises(IsoformerError, match="needs the dna modality"):
        CrossAttentionAggregator(CrossAttentionConfig(num_heads=2, query_modalities="dna"),
                                 {"rna": 12, "protein": 4})
    with pytest.raises(IsoformerError, match=r"kind perceiver\): 5 heads do not divide the "
                                             r"width 12"):
        make("perceiver", num_heads=5)
    with pytest.raises(IsoformerError, match="needs the dna modality"):
        make("c_abstractor", "dna", modalities=("rna", "protein"))
    with pytest.raises(IsoformerError, match="kernel_size 4 must be odd"):
        CAbstractorConfig(kernel_size=4)
    with pytest.raises(IsoformerError, match=r"kind perceiver\): num_latents must be at least 1; "
                                             r"fusion_layers must be at least 0"):
        PerceiverConfig(num_latents=0, fusion_layers=-1)
    with pytest.raises(IsoformerError, match="dim must be at least 1"):
        LinearProjectionConfig(dim=0)
    with pytest.raises(IsoformerError, match="dropout 1.0 is outside"):
        CrossAttentionConfig(dropout=1.0)
    with pytest.raises(IsoformerError, match="kind 'perceiverr' is not one of"):
        aggregation_config("perceiverr")


# ---- typed configs: one dataclass per kind, told apart by `kind` ----

def test_each_kind_parses_into_its_own_config_and_round_trips(tmp_path):
    assert list(AGGREGATION_CONFIGS) == ["cross_attention", "linear", "concat", "perceiver",
                                         "c_abstractor"]
    assert set(AGGREGATORS) == set(AGGREGATION_CONFIGS)
    base = config_to_dict(load_preset("tiny"))
    for kind, cls in AGGREGATION_CONFIGS.items():
        data = {**base, "model": {**base["model"], "aggregation": {"kind": kind}}}
        config = config_from_dict(data)
        assert type(config.model.aggregation) is cls and config.model.aggregation == cls()
        saved = config_to_dict(config)["model"]["aggregation"]
        assert list(saved) == [f.name for f in cls.__dataclass_fields__.values()]
        save_config(config, tmp_path / f"{kind}.yaml")
        assert load_config(tmp_path / f"{kind}.yaml") == config
    perceiver = config_from_dict({**base, "model": {**base["model"], "aggregation": {
        "kind": "perceiver", "num_latents": 16, "num_layers": 3, "dim": 64}}})
    assert perceiver.model.aggregation == PerceiverConfig(num_latents=16, num_layers=3, dim=64)
    # No kind: cross_attention (the former default).
    default = config_from_dict({**base, "model": {**base["model"], "aggregation": {
        "num_heads": 2}}})
    assert default.model.aggregation == CrossAttentionConfig(num_heads=2)
    with pytest.raises(IsoformerError, match=r"model.aggregation: kind perceiver has no field "
                                             r"'num_tokens' \(valid: kind, num_latents"):
        config_from_dict({**base, "model": {**base["model"], "aggregation": {
            "kind": "perceiver", "num_tokens": 3}}})
    with pytest.raises(IsoformerError, match=r"model.aggregation.kind: 'resampler' is not one of "
                                             r"cross_attention, linear, concat"):
        config_from_dict({**base, "model": {**base["model"], "aggregation": {
            "kind": "resampler"}}})


def test_overrides_switch_kind_to_its_defaults_in_either_order():
    tiny = load_preset("tiny")  # cross_attention with num_heads 4
    assert tiny.model.aggregation == CrossAttentionConfig(num_heads=4)
    for overrides in (["model.aggregation.kind=perceiver", "model.aggregation.num_latents=16"],
                      ["model.aggregation.num_latents=16", "--model.aggregation.kind",
                       "perceiver"]):
        config = apply_overrides(tiny, overrides)
        # The perceiver's defaults (num_heads 8, not the cross-attention block's 4) but 16 latents.
        assert config.model.aggregation == PerceiverConfig(num_latents=16)
    switched = apply_overrides(tiny, ["model.aggregation.kind=c_abstractor",
                                      "model.aggregation.num_tokens=8",
                                      "model.aggregation.query_modalities=dna"])
    assert switched.model.aggregation == CAbstractorConfig(num_tokens=8, query_modalities="dna")
    # Setting the kind it already has keeps the block's fields.
    same = apply_overrides(tiny, ["model.aggregation.kind=cross_attention"])
    assert same.model.aggregation == CrossAttentionConfig(num_heads=4)
    back = apply_overrides(switched, ["model.aggregation.kind=cross_attention"])
    assert back.model.aggregation == CrossAttentionConfig()
    assert apply_overrides(tiny, ["model.aggregation.kind=concat"]).model.aggregation == (
        ConcatConfig())
    assert apply_overrides(tiny, ["model.aggregation.kind=linear", "model.aggregation.dim=16"]
                           ).model.aggregation == LinearProjectionConfig(dim=16)
    with pytest.raises(IsoformerError, match=r"model.aggregation \(kind cross_attention\) has no "
                                             r"field 'num_latents'.*set model.aggregation.kind"):
        apply_overrides(tiny, ["model.aggregation.num_latents=16"])
    with pytest.raises(IsoformerError, match="'perceiverr' is not one of cross_attention, linear"):
        apply_overrides(tiny, ["model.aggregation.kind=perceiverr"])
    with pytest.raises(IsoformerError, match="expected int"):
        apply_overrides(tiny, ["model.aggregation.kind=perceiver",
                               "model.aggregation.num_latents=many"])


def test_dna_pool_window_needs_a_token_preserving_kind():
    tiny = load_preset("tiny")
    for kind in ("cross_attention", "concat"):
        apply_overrides(tiny, [f"model.aggregation.kind={kind}", "model.head.dna_pool_window=1,3"])
    for kind in ("linear", "perceiver", "c_abstractor"):
        with pytest.raises(IsoformerError, match=f"aggregation kind {kind} does not keep"):
            apply_overrides(tiny, [f"model.aggregation.kind={kind}",
                                   "model.head.dna_pool_window=1,3"])
    with pytest.raises(IsoformerError, match="query_modalities=dna needs dna"):
        apply_overrides(tiny, ["model.modalities=rna,protein", "model.aggregation.kind=perceiver",
                               "model.aggregation.query_modalities=dna"])


LEGACY_LINEAR = {"kind": "linear", "num_heads": 8, "num_layers": 1, "dropout": 0.0,
                 "query_modalities": "all"}


def test_legacy_linear_reads_as_concat(caplog):
    data = config_to_dict(load_preset("tiny"))
    data["model"]["aggregation"] = dict(LEGACY_LINEAR)
    with caplog.at_level("WARNING"):
        assert config_from_dict(data).model.aggregation == ConcatConfig()
        assert model_config_from_dict(data["model"]).aggregation == ConcatConfig()
    assert "read as kind concat" in caplog.text
    assert data["model"]["aggregation"] == LEGACY_LINEAR  # the caller's data is left as it was
    # The new layout of kind linear is the projection.
    data["model"]["aggregation"] = {"kind": "linear", "dim": 8}
    assert config_from_dict(data).model.aggregation == LinearProjectionConfig(dim=8)


# ---- a tiny IsoFormer of each kind ----

@pytest.mark.parametrize("kind", KINDS)
def test_tiny_isoformer_trains_a_step_and_reloads_identically(kind, tmp_path, single_thread):
    model = tiny_model(f"model.aggregation.kind={kind}", "model.head.dropout=0.0").train()
    assert type(model.config.aggregation) is AGGREGATION_CONFIGS[kind]
    records = random_records(4)
    batch = model.tokenize(records)
    targets = torch.randn(4, 30, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {name: p.detach().clone() for name, p in model.aggregator.named_parameters()}
    loss = F.mse_loss(model(batch).predictions, targets)
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    optimizer.step()
    if kind != "concat":  # the only kind without parameters
        assert before and any(not torch.equal(p, before[name])
                              for name, p in model.aggregator.named_parameters())

    model.eval()
    expected = model.predict(records, batch_size=2)
    assert expected.shape == (4, 30) and np.isfinite(expected).all()
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())["model"]["aggregation"]
    assert saved == config_to_dict(model.config)["aggregation"] and saved["kind"] == kind
    reloaded = IsoFormer.from_pretrained(tmp_path / "model")
    assert reloaded.config == model.config
    np.testing.assert_array_equal(reloaded.predict(records, batch_size=2), expected)


def test_saved_legacy_linear_model_reloads_as_concat(tmp_path, single_thread):
    model = tiny_model("model.aggregation.kind=concat").eval()
    records = random_records(3)
    expected = model.predict(records)
    model.save_pretrained(tmp_path / "model")
    config_file = tmp_path / "model" / "config.json"
    description = json.loads(config_file.read_text())
    description["model"]["aggregation"] = dict(LEGACY_LINEAR)  # as saved before the split
    config_file.write_text(json.dumps(description))
    reloaded = IsoFormer.from_pretrained(tmp_path / "model")
    assert reloaded.config.aggregation == ConcatConfig()
    np.testing.assert_array_equal(reloaded.predict(records), expected)
