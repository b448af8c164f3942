"""Attention by transcript region (issue 11, the paper's Appendix C): the token -> region mapping
on a hand-built transcript, region shares on hand-made attention maps, the statistics, and the
analysis end to end on a tiny trained run."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import polars as pl
import pytest
import scipy.stats
import torch
from tiny_dataset import train_tiny_run

from isoformer.analysis.attention import (
    REGIONS,
    SUMMARY_FILE,
    TABLE_COLUMNS,
    TABLE_FILE,
    attention_analysis,
    benjamini_hochberg,
    figure_file,
    initial_rna_encoder,
    normalized_shares,
    paired_t_test,
    region_attention_mass,
    region_bounds,
    run_rna_encoder,
    token_region_weights,
)
from isoformer.data.schema import TRANSCRIPTS_FILE
from isoformer.encoders import EncoderConfig, NucleotideTransformerEncoder
from isoformer.encoders.base import EncoderOutput, SequenceEncoder
from isoformer.encoders.esm import EsmEncoder
from isoformer.errors import IsoformerError
from isoformer.training.fit import seeded_model
from isoformer.training.run import Run

# A hand-built transcript: 5'UTR 7 bases, CDS 12, 3'UTR 5 (24 bases).
UTR5, CDS, UTR3 = 7, 12, 5
TRANSCRIPT = "ACGTTGC" + "ATGGCCAAGTGA" + "CCTAG"


def nt_encoder(**fields) -> NucleotideTransformerEncoder:
    return NucleotideTransformerEncoder(EncoderConfig(
        kind="nucleotide_transformer", architecture={"preset": "tiny"}, **fields))


def test_token_to_region_on_a_hand_built_transcript():
    bounds = region_bounds(UTR5, CDS, UTR3)
    assert bounds.tolist() == [[0, 7], [7, 19], [19, 24]]
    # Uncropped: <cls>, four 6-mers [0, 6) [6, 12) [12, 18) [18, 24).
    spans = nt_encoder().token_spans([TRANSCRIPT])[0]
    assert spans.tolist() == [[0, 0], [0, 6], [6, 12], [12, 18], [18, 24]]
    weights = token_region_weights(spans, bounds)
    np.testing.assert_allclose(weights, [
        [0, 0, 0],  # <cls>: no region
        [1, 0, 0],
        [1 / 6, 5 / 6, 0],  # base 6 is the 5'UTR's last, bases 7-11 the CDS's first
        [0, 1, 0],
        [0, 1 / 6, 5 / 6],  # base 18 is the CDS's last
    ])
    # RNA keeps its 3' end: 20 of 24 bases, [4, 24) -> 6-mers [4, 10) [10, 16) [16, 22), then the
    # remainder as single bases 22 and 23.
    cropped = nt_encoder(max_length=20, crop="end")
    spans = cropped.token_spans([TRANSCRIPT])[0]
    assert spans.tolist() == [[0, 0], [4, 10], [10, 16], [16, 22], [22, 23], [23, 24]]
    weights = token_region_weights(spans, bounds)
    np.testing.assert_allclose(weights, [
        [0, 0, 0],
        [3 / 6, 3 / 6, 0],  # bases 4-6 of the 5'UTR, 7-9 of the CDS
        [0, 1, 0],
        [0, 3 / 6, 3 / 6],  # bases 16-18 of the CDS, 19-21 of the 3'UTR
        [0, 0, 1],
        [0, 0, 1],
    ])
    np.testing.assert_allclose(weights.sum(axis=0), [0.5, 2.0, 2.5])  # region sizes in tokens
    assert len(spans) == cropped.tokenize([TRANSCRIPT])["input_ids"].shape[1]


def _weights(tokens: int) -> np.ndarray:
    """Region weights of `tokens` sequence tokens after <cls>: 2 of 5'UTR, a boundary token
    (half 5'UTR, half CDS), 3 of CDS, then 3'UTR."""
    rows = [[0, 0, 0], [1, 0, 0], [1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]]
    rows += [[0, 0, 1]] * (tokens - 6)
    return np.array(rows, dtype=np.float64)


def test_region_shares_on_hand_made_attention_maps():
    weights = _weights(9)  # <cls> + 9 tokens; sizes 2.5, 3.5, 3
    sizes = weights.sum(axis=0)
    length = len(weights)
    key_regions = torch.from_numpy(weights)[None]  # [1, L, R]
    queries = torch.from_numpy(weights.sum(axis=1) > 0)[None]  # sequence tokens

    def masses(attention: torch.Tensor) -> np.ndarray:
        return region_attention_mass(attention[None, None], key_regions, queries)[0, 0].numpy()

    # Uniform over every token (<cls> included): masses proportional to the region lengths, the
    # rest on <cls>; normalised by length, every region gets the same share.
    uniform = torch.full((length, length), 1.0 / length)
    mass = masses(uniform)
    np.testing.assert_allclose(mass, sizes / length, rtol=1e-6)
    np.testing.assert_allclose(1 - mass.sum(), 1 / length, rtol=1e-5)
    np.testing.assert_allclose(normalized_shares(mass, sizes), [1 / 3] * 3, rtol=1e-6)
    # Uniform over the sequence tokens only: masses = length shares.
    over_sequence = torch.zeros(length, length)
    over_sequence[:, 1:] = 1.0 / (length - 1)
    np.testing.assert_allclose(masses(over_sequence), sizes / sizes.sum(), rtol=1e-6)
    # All on the CDS tokens: CDS share 1, whatever the queries.
    on_cds = torch.zeros(length, length)
    on_cds[:, 4:7] = 1.0 / 3
    mass = masses(on_cds)
    np.testing.assert_allclose(mass, [0, 1, 0], atol=1e-7)
    np.testing.assert_allclose(normalized_shares(mass, sizes), [0, 1, 0], atol=1e-7)
    # All on one boundary token: its half in each region; the 5'UTR (2.5 tokens) is the smaller
    # region, so per token it gets more: 0.5 / 2.5 against 0.5 / 3.5.
    on_boundary = torch.zeros(length, length)
    on_boundary[:, 3] = 1.0
    mass = masses(on_boundary)
    np.testing.assert_allclose(mass, [0.5, 0.5, 0], atol=1e-7)
    np.testing.assert_allclose(normalized_shares(mass, sizes), [3.5 / 6, 2.5 / 6, 0], rtol=1e-6)


def test_region_mass_averages_sequence_queries_only_and_ignores_padding():
    short, long_ = _weights(7), _weights(9)
    length = len(long_)
    key_regions = torch.zeros(2, length, 3, dtype=torch.float64)
    key_regions[0, : len(short)] = torch.from_numpy(short)
    key_regions[1] = torch.from_numpy(long_)
    queries = key_regions.sum(-1) > 0
    attention = torch.zeros(2, 1, length, length, dtype=torch.float64)
    attention[:, :, :, 4] = 1.0  # every query on a CDS token ...
    attention[:, :, 0, :] = 0.0
    attention[:, :, 0, 1] = 1.0  # ... except <cls>, on the 5'UTR: not a query that counts
    attention[0, :, len(short):, :] = 0.0
    attention[0, :, len(short):, 8] = 1.0  # padded queries (of row 0) on padding: ignored
    mass = region_attention_mass(attention, key_regions, queries)
    np.testing.assert_allclose(mass[:, 0].numpy(), [[0, 1, 0], [0, 1, 0]])
    # Half the sequence queries of the long row on the 3'UTR.
    attention[1, :, 1:6, :] = 0.0
    attention[1, :, 1:6, 9] = 1.0
    mass = region_attention_mass(attention, key_regions, queries)
    np.testing.assert_allclose(mass[1, 0].numpy(), [0, 4 / 9, 5 / 9])


def test_paired_t_test_and_benjamini_hochberg():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=20), rng.normal(size=20)
    t, p = paired_t_test(a, b)
    expected = scipy.stats.ttest_rel(a, b)
    assert (t, p) == pytest.approx((expected.statistic, expected.pvalue))
    assert paired_t_test(a, a) == (0.0, 1.0)  # no difference at all
    steps = np.arange(20) / 8  # exact in binary: the shifted copies differ by exactly 0.5
    assert paired_t_test(steps + 0.5, steps) == (float("inf"), 0.0)  # one shift everywhere
    assert paired_t_test(steps - 0.5, steps) == (float("-inf"), 0.0)
    p_values = [0.01, 0.04, 0.03, 0.5, 0.0, 1.0, 0.02, 0.04]
    np.testing.assert_allclose(benjamini_hochberg(p_values),
                               scipy.stats.false_discovery_control(p_values))
    # Hand-checked: sorted p 0.01, 0.02, 0.03 -> 0.01 * 3, 0.02 * 3 / 2, 0.03 -> all 0.03.
    np.testing.assert_allclose(benjamini_hochberg([0.03, 0.01, 0.02]), [0.03, 0.03, 0.03])
    assert benjamini_hochberg([]).shape == (0,)


def test_attention_maps_are_part_of_the_encoder_interface():
    class Plain(SequenceEncoder):
        unit = "bases"

        def __init__(self):
            super().__init__()
            self.config = EncoderConfig(kind="enformer")

        def tokenize(self, sequences):
            return {}

        def forward(self, inputs):
            return EncoderOutput(torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.bool))

    plain = Plain()
    assert not plain.exposes_attention
    with pytest.raises(IsoformerError, match="enformer: this encoder does not expose"):
        plain.forward_with_attentions({})
    # ESM-2 shares NT-v2's backbone: maps on request, [B, H, L, L] per layer.
    esm = EsmEncoder(EncoderConfig(kind="esm2", architecture={"preset": "tiny"})).eval()
    assert esm.exposes_attention
    inputs = esm.tokenize(["MKTAYIAK", "MKV"])
    with torch.no_grad():
        output = esm.forward_with_attentions(inputs)
    length = inputs["input_ids"].shape[1]
    heads = esm.backbone.config.num_attention_heads
    assert [a.shape for a in output.attentions] == [(2, heads, length, length)] * esm.num_layers
    assert esm.backbone.config._attn_implementation == "sdpa"


# ---- end to end on a tiny trained run ----


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir, data = train_tiny_run(tmp_path_factory)
    # The tiny dataset has no UTRs: a copy where every transcript has all three regions.
    regions = tmp_path_factory.mktemp("regions") / "data"
    shutil.copytree(data, regions)
    table = pl.read_parquet(regions / TRANSCRIPTS_FILE)
    length = pl.col("rna").str.len_chars().cast(pl.Int64)
    table.with_columns(
        utr5_length=length // 5, cds_length=length - length // 5 - length // 4,
        utr3_length=length // 4,
    ).write_parquet(regions / TRANSCRIPTS_FILE)
    return run_dir, data, regions


def test_initial_encoder_is_the_run_before_training(tiny_run):
    run_dir, _, _ = tiny_run
    initial = initial_rna_encoder(run_dir)
    trained = run_rna_encoder(run_dir)
    again = seeded_model(Run.open(run_dir).config).encoders["rna"]
    name = "backbone.embeddings.word_embeddings.weight"
    before, after = initial.state_dict()[name], trained.state_dict()[name]
    assert torch.equal(before, again.state_dict()[name])  # the rebuild is deterministic
    # One epoch on a few dozen short RNAs: most 6-mers never occur, so their embedding rows only
    # felt the weight decay; a different draw would differ everywhere.
    close = torch.isclose(before, after, rtol=1e-3, atol=1e-6).all(dim=1)
    assert close.float().mean() > 0.9 and not close.all()


def test_attention_analysis_end_to_end(tiny_run, tmp_path):
    run_dir, _, regions = tiny_run
    out = tmp_path / "attention"
    summary = attention_analysis(run_dir, regions, out, split="train", batch_size=4)
    assert summary.baseline == "pretrained" and summary.excluded == {}
    assert summary.n_transcripts == 15 and (summary.layers, summary.heads) == (2, 4)
    with open(out / TABLE_FILE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == TABLE_COLUMNS
    assert len(rows) == 2 * 4 * 3
    assert {(int(r["layer"]), int(r["head"]), r["region"]) for r in rows} == {
        (layer, head, region) for layer in (1, 2) for head in range(4) for region in REGIONS}
    for layer, head in ((1, 0), (2, 3)):
        cell = [r for r in rows if (int(r["layer"]), int(r["head"])) == (layer, head)]
        # Normalised shares sum to 1 over the regions; masses leave the rest on <cls>.
        assert sum(float(r["share_finetuned"]) for r in cell) == pytest.approx(1.0)
        assert sum(float(r["share_baseline"]) for r in cell) == pytest.approx(1.0)
        assert 0 < sum(float(r["mass_finetuned"]) for r in cell) < 1
    for row in rows:
        assert float(row["difference"]) == pytest.approx(
            float(row["share_finetuned"]) - float(row["share_baseline"]), abs=1e-12)
        assert 0 <= float(row["p"]) <= float(row["q"]) <= 1
        assert row["significant"] == str(float(row["q"]) < 0.05)
        assert int(row["n_transcripts"]) == 15
    assert any(float(row["difference"]) != 0 for row in rows)  # training moved the encoder
    for region in REGIONS:
        path = out / figure_file(region)
        assert summary.figures[region] == path and path.read_bytes()[:4] == b"\x89PNG"
    written = json.loads((out / SUMMARY_FILE).read_text())
    assert written["n_transcripts"] == 15 and written["baseline"] == "pretrained"
    assert "split by base share" in written["token_to_region"]

    # The run against itself: no difference, nothing significant.
    same = attention_analysis(run_dir, regions, tmp_path / "same", split="valid",
                              baseline=run_dir, max_transcripts=4)
    assert same.n_transcripts == 4 and same.significant == {r: 0 for r in REGIONS}
    with open(tmp_path / "same" / TABLE_FILE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert all(float(r["difference"]) == 0 and float(r["p"]) == 1 for r in rows)


def test_attention_analysis_errors(tiny_run, tmp_path):
    run_dir, data, regions = tiny_run
    # The unmodified tiny dataset: no UTRs, lncRNAs without CDS.
    with pytest.raises(IsoformerError, match=r"0 test transcript\(s\) have a 5'UTR.*no_cds"):
        attention_analysis(run_dir, data, tmp_path / "a")
    with pytest.raises(IsoformerError, match="not a training run"):
        attention_analysis(run_dir, regions, tmp_path / "b", baseline=tmp_path)
    with pytest.raises(IsoformerError, match="unknown split"):
        attention_analysis(run_dir, regions, tmp_path / "c", split="dev")
    assert not any((tmp_path / name).exists() for name in "abc")
