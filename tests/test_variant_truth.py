"""analysis/variant_truth.py: variants placed on a simulated study's planted signals, and the
truth's effect of each, checked against the rules by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isoformer.analysis.variant_truth import (
    CLASSES,
    class_summary,
    genome_position,
    place_variants,
    true_expression,
    variant_truth,
)
from isoformer.cli import main
from isoformer.data.build import build_dataset
from isoformer.data.dataset import read_transcripts
from isoformer.data.expression_model import (
    ExpressionRules,
    count_occurrences,
    log_tpm,
    expression_components,
    promoter_sequence,
    sequence_features,
)
from isoformer.data.genome import Genome
from isoformer.data.simulate import simulate_study
from isoformer.data.variants import TranscriptStructure, variant_inputs
from isoformer.errors import IsoformerError
from isoformer.training.baseline import fit_baseline

DNA_LENGTH = 1024


def _structure(strand: str) -> TranscriptStructure:
    # Exons [10, 13) and [20, 24): RNA of 7 bases.
    return TranscriptStructure(
        transcript_id="T", gene_id="G", chrom="chr1", strand=strand,
        exons=((10, 13), (20, 24)), tss=10 if strand == "+" else 23, rna="ACGTACG",
        protein="", utr5_length=0, cds_length=0, utr3_length=7, cds_phase=0)


def test_genome_position_walks_the_exons_on_both_strands():
    plus, minus = _structure("+"), _structure("-")
    assert [genome_position(plus, i) for i in range(7)] == [10, 11, 12, 20, 21, 22, 23]
    assert [genome_position(minus, i) for i in range(7)] == [23, 22, 21, 20, 12, 11, 10]
    with pytest.raises(ValueError, match="past its 7 bases"):
        genome_position(plus, 7)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("truth")
    simulate_study(root / "study", n_genes=40, seed=2)
    s = root / "study"
    build_dataset(fasta=s / "genome.fa", gtf=s / "annotation.gtf",
                  tpm=s / "transcript_tpm.gct.gz", samples=s / "sample_attributes.txt",
                  out=root / "dataset", val_fraction=0.2, test_fraction=0.5, seed=2)
    return s, root / "dataset"


def _placed(study):
    s, data = study
    truth = json.loads((s / "truth.json").read_text())
    rules = ExpressionRules.from_json(truth["rules"])
    structures = {row["transcript_id"]: TranscriptStructure.from_row(row)
                  for row in read_transcripts(data, "test").iter_rows(named=True)}
    genome = Genome(s / "genome.fa")
    placed = place_variants(list(structures.values()), rules, genome, DNA_LENGTH, per_class=5)
    return truth, rules, structures, genome, placed


def test_placed_variants_remove_the_signal_they_target(study):
    truth, rules, structures, genome, placed = _placed(study)
    assert {p.kind for p in placed} == set(CLASSES)
    for p in placed:
        tx = structures[p.transcript_id]
        assert genome.fetch(tx.chrom, p.variant.start, p.variant.end) == p.variant.ref
        inputs = variant_inputs(p.variant, tx, genome, DNA_LENGTH)
        ref_window = genome.window(tx.chrom, tx.tss, tx.strand, DNA_LENGTH)
        before = sequence_features(ref_window, tx.rna, tx.protein, rules)
        after = sequence_features(inputs.dna, inputs.rna, inputs.protein, rules)
        if p.kind == "rna_element":
            assert inputs.consequence == "3_prime_UTR_variant"
            motif = next(m for m in rules.rna_motifs if m.name == p.element)
            utr3 = tx.utr5_length + tx.cds_length
            assert (count_occurrences(inputs.rna[utr3:], motif)
                    < count_occurrences(tx.rna[utr3:], motif))
        elif p.kind == "protein_feature":
            assert inputs.consequence == "missense_variant"
            assert inputs.protein_change == p.protein_change
            index = int(p.protein_change[3:-1]) - 1
            assert inputs.protein[:index] == tx.protein[:index]
            assert inputs.protein[index + 1:] == tx.protein[index + 1:]
            assert inputs.protein[index] == p.protein_change[-1] != tx.protein[index]
            assert after.protein != before.protein
        else:
            assert inputs.consequence == "upstream_gene_variant"
            assert after.promoter_motifs[p.element] < before.promoter_motifs[p.element]
            assert (promoter_sequence(inputs.dna, rules) != promoter_sequence(ref_window, rules))


def test_true_expression_moves_by_the_rules_weights(study):
    """Removing one copy of an RNA element moves log TPM by exactly minus its weights."""
    truth, rules, structures, genome, placed = _placed(study)
    p = next(p for p in placed if p.kind == "rna_element")
    tx = structures[p.transcript_id]
    inputs = variant_inputs(p.variant, tx, genome, DNA_LENGTH)
    gene = np.asarray(truth["transcripts"][tx.transcript_id]["components"]["gene"])
    ref_window = genome.window(tx.chrom, tx.tss, tx.strand, DNA_LENGTH)
    # The rules' noise-free expression of the reference is the one truth.json records.
    np.testing.assert_allclose(
        true_expression(ref_window, tx.rna, tx.protein, gene, rules),
        truth["transcripts"][tx.transcript_id]["expression"], atol=1e-5)
    before = sequence_features(ref_window, tx.rna, tx.protein, rules)
    after = sequence_features(inputs.dna, inputs.rna, inputs.protein, rules)
    moved = {name: after.rna_motifs[name] - before.rna_motifs[name] for name in before.rna_motifs}
    expected = sum(moved[m.name] * np.asarray(m.weights) for m in rules.rna_motifs)
    change = (log_tpm(expression_components(after, gene, rules), rules)
              - log_tpm(expression_components(before, gene, rules), rules))
    assert moved[p.element] <= -1
    np.testing.assert_allclose(change, expected, atol=1e-9)


def test_variant_truth_scores_every_placed_variant(study, tmp_path):
    s, data = study
    run = fit_baseline(data, tmp_path / "kmer")
    results = variant_truth(s, data, [run.directory], tmp_path / "out", per_class=4,
                            device="cpu", progress=False)
    # The command writes the same table.
    assert main(["variant-truth", "--study", str(s), "--data", str(data), "--run",
                 str(run.directory), "--out", str(tmp_path / "cli"), "--per-class", "4",
                 "--device", "cpu", "--no-progress"]) == 0
    assert ((tmp_path / "cli" / "variant_truth.md").read_text()
            == (tmp_path / "out" / "variant_truth.md").read_text())
    rows = pl.read_csv(tmp_path / "out" / "rows.csv")
    scored = pl.read_parquet(tmp_path / "out" / "kmer.parquet")
    assert len(rows) == len(scored)
    summary = {s["kind"]: s for s in results["kmer"]}
    for kind in CLASSES:
        assert summary[kind]["variants"] == 4
        # Every variant's own transcript got the intended consequence.
        assert summary[kind]["targeted"] == summary[kind]["targeted_as_intended"] == 4
    for name in ("variants.vcf", "variant_truth.md", "variant_truth.json", "variant_truth.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_class_summary_counts_signs_and_leaves_undefined_correlations_out():
    rows = pl.DataFrame({
        "variant_id": ["a", "a", "b", "c"],
        "kind": ["rna_element", "rna_element", "rna_element", "protein_feature"],
        "delta_mean": [0.2, -0.1, 0.3, 0.0],
        "true_delta_mean": [0.5, 0.4, 0.005, -0.2],
        "targeted": [True, False, True, True],
        "intended": [True, False, True, True],
        "read": [True, True, True, True],
    })
    # A row the run cannot read is left out whatever its numbers.
    rows = pl.concat([rows, rows[:1].with_columns(pl.lit("e").alias("variant_id"),
                                                  pl.lit(False).alias("read"))])
    summary = {s["kind"]: s for s in class_summary(rows, min_effect=0.01)}
    rna = summary["rna_element"]
    # Row b moves less than min_effect; of a's two rows one has the truth's sign.
    assert (rna["variants"], rna["rows"], rna["moved_rows"]) == (3, 4, 2)
    assert rna["right_sign"] == 0.5 and rna["pearson"] is None  # two rows: undefined
    protein = summary["protein_feature"]
    assert protein["right_sign"] == 0.0  # a prediction that does not move is never right
    assert protein["pearson"] is None
    assert summary["promoter_motif"]["right_sign"] is None
    assert (rna["targeted"], rna["targeted_as_intended"]) == (3, 3)


def test_variant_truth_refuses_a_non_empty_out_and_leaves_nothing_on_failure(study, tmp_path):
    s, data = study
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("x")
    with pytest.raises(IsoformerError, match="not empty"):
        variant_truth(s, data, [tmp_path / "no-run"], tmp_path / "full")
    # A run that does not exist fails before anything is written.
    with pytest.raises(IsoformerError):
        variant_truth(s, data, [tmp_path / "no-run"], tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
