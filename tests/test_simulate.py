"""`isoformer simulate`: formats parse through the real readers, truth reproduces from the rules."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from isoformer.analysis.oracle import oracle_metrics
from isoformer.cli import main
from isoformer.constants import TISSUES
from isoformer.data.expression_model import (
    ExpressionRules,
    expression_components,
    log_tpm,
    noise_free_expression,
    promoter_sequence,
    sequence_features,
)
from isoformer.data.gencode import read_gtf, transcript_sequences, translate
from isoformer.data.genome import Genome, reverse_complement
from isoformer.data.simulate import read_truth, simulate_study
from isoformer.errors import IsoformerError

N_GENES = 16
FILES = (
    "genome.fa",
    "annotation.gtf",
    "transcript_tpm.gct.gz",
    "sample_attributes.txt",
    "truth.json",
)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "study"
    simulate_study(out, n_genes=N_GENES, seed=3)
    return out


@pytest.fixture(scope="module")
def truth(study) -> dict:
    return read_truth(study / "truth.json")


@pytest.fixture(scope="module")
def gtf(study):
    return read_gtf(study / "annotation.gtf").transcripts


def _read_gct(path: Path) -> tuple[list[str], list[str], list[str], np.ndarray]:
    with gzip.open(path, "rt") as lines:
        assert lines.readline() == "#1.2\n"
        n_rows, n_samples = map(int, lines.readline().rstrip("\n").split("\t"))
        header = lines.readline().rstrip("\n").split("\t")
        rows = [line.rstrip("\n").split("\t") for line in lines]
    assert header[:2] == ["transcript_id", "gene_id"]
    assert len(header) == 2 + n_samples and len(rows) == n_rows
    assert all(len(row) == len(header) for row in rows)
    values = np.array([row[2:] for row in rows], dtype=np.float64)
    return [r[0] for r in rows], [r[1] for r in rows], header[2:], values


def test_same_seed_same_files_other_seed_differs(tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        simulate_study(tmp_path / name, n_genes=4, seed=seed)
    for file in FILES:
        same = (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
        assert same, file
    assert (tmp_path / "a" / "genome.fa").read_bytes() != (
        tmp_path / "c" / "genome.fa"
    ).read_bytes()


def test_writes_exactly_the_documented_files(study):
    assert sorted(p.name for p in study.iterdir()) == sorted(FILES)
    assert not [p for p in study.parent.iterdir() if p.name.startswith(".")]  # no temp dir left


def test_gct_and_sample_attributes_match_gtex_layout(study, truth):
    transcript_ids, gene_ids, sample_ids, tpm = _read_gct(study / "transcript_tpm.gct.gz")
    assert transcript_ids == list(truth["transcripts"])
    assert gene_ids == [t["gene_id"] for t in truth["transcripts"].values()]
    assert (tpm >= 0).all() and tpm.max() > 10

    samples = pl.read_csv(study / "sample_attributes.txt", separator="\t")
    assert {"SAMPID", "SMTS", "SMTSD"} <= set(samples.columns)
    assert samples["SAMPID"].n_unique() == len(samples)
    assert all(
        re.fullmatch(r"GTEX-[0-9A-Z]{4,5}-\d{4}(-R\d+a)?-SM-[0-9A-Z]{5}", s)
        for s in samples["SAMPID"]
    )
    with_data = samples.filter(pl.col("SAMPID").is_in(sample_ids))
    assert with_data["SAMPID"].to_list() == sample_ids  # every GCT sample is annotated, same order
    per_tissue = Counter(with_data["SMTS"])
    assert all(per_tissue[tissue] >= 3 for tissue in TISSUES)
    assert set(per_tissue) - set(TISSUES) == {"Bone Marrow"}
    assert len(samples) > len(sample_ids)  # attribute rows without expression, as in GTEx


def test_gtf_follows_gencode_conventions(study, gtf, truth):
    rows = [
        line.split("\t")
        for line in (study / "annotation.gtf").read_text().splitlines()
        if not line.startswith("#")
    ]
    assert all(len(row) == 9 for row in rows)
    features = Counter(row[2] for row in rows)
    assert set(features) == {
        "gene",
        "transcript",
        "exon",
        "CDS",
        "UTR",
        "start_codon",
        "stop_codon",
    }
    assert {row[6] for row in rows} == {"+", "-"}
    assert all(re.fullmatch(r"ENST\d{11}\.\d+", t) for t in gtf)
    assert all(re.fullmatch(r"ENSG\d{11}\.\d+", t.gene_id) and t.gene_name for t in gtf.values())
    assert {t.transcript_type for t in gtf.values()} == {
        "protein_coding",
        "lncRNA",
        "retained_intron",
    }
    assert set(gtf) == set(truth["transcripts"])

    genes: dict[str, list] = {}
    for t in gtf.values():
        genes.setdefault(t.gene_id, []).append(t)
    assert all(len(isoforms) >= 2 for isoforms in genes.values())
    assert any(
        len({t.tss for t in isoforms}) > 1 for isoforms in genes.values()
    )  # alternative TSSs
    assert all(len(t.exons) >= 3 for t in gtf.values() if t.transcript_type == "protein_coding")


def test_coding_rows_exclude_the_stop_and_translate_to_the_truth(study, gtf, truth):
    genome = Genome(study / "genome.fa")
    coding = [t for t in gtf.values() if t.cds]
    assert coding and all(t.transcript_type == "protein_coding" for t in coding)
    assert any(phase for t in coding for _, _, phase in t.cds)  # nonzero phases are exercised
    for t in coding:
        protein = truth["transcripts"][t.transcript_id]["protein"]
        assert sum(end - start for start, end, _ in t.cds) == 3 * len(protein)
        stop = "".join(genome.fetch(t.chrom, s, e) for s, e in t.stop_codon)
        assert translate(stop if t.strand == "+" else reverse_complement(stop)) == "*"
        assert transcript_sequences(t, genome).protein == protein
        assert 40 <= len(protein) <= 400


def test_truth_reproduces_from_the_sequences_and_rules(study, gtf, truth):
    rules = ExpressionRules.from_json(truth["rules"])
    assert rules == ExpressionRules()
    genome = Genome(study / "genome.fa")
    for transcript_id, t in gtf.items():
        record = truth["transcripts"][transcript_id]
        sequences = transcript_sequences(t, genome)
        window = genome.window(t.chrom, t.tss, t.strand, 1024)
        features = sequence_features(window, sequences.rna, sequences.protein, rules)
        assert dataclasses.asdict(features) == record["features"]
        components = expression_components(features, record["gene_baseline"], rules)
        for name in ("dna", "rna", "protein"):
            np.testing.assert_allclose(components[name], record["components"][name])
        np.testing.assert_allclose(log_tpm(components, rules), record["log_tpm"])
        np.testing.assert_allclose(
            noise_free_expression(np.array(record["log_tpm"])), record["expression"]
        )
        # DNA and RNA features never share bases: the promoter lies upstream of the transcript.
        assert not any(m in sequences.rna for m in rules.promoter_motifs.values())
    planted = Counter()
    for record in truth["transcripts"].values():
        planted.update(record["features"]["promoter_motifs"])
        planted.update(record["features"]["rna_motifs"])
    assert all(planted[name] > 0 for name in (*rules.promoter_motifs, *rules.rna_motifs))


def test_genome_has_soft_masking_n_runs_and_genes_at_chromosome_ends(study, gtf, truth):
    text = (study / "genome.fa").read_text()
    assert re.search("[acgt]{50}", text) and re.search("N{100}", text.replace("\n", ""))
    genome = Genome(study / "genome.fa")
    assert truth["near_edge_genes"]
    padded = 0
    for t in gtf.values():
        if t.gene_id in truth["near_edge_genes"]:
            window = genome.window(t.chrom, t.tss, t.strand, 1024)
            padded += window.startswith("N" * 50)  # upstream of the TSS runs off the chromosome
    assert padded >= 2  # one gene at each end, each with its isoforms


def test_each_modality_moves_expression_in_the_documented_direction():
    rules = ExpressionRules()
    brain, liver, pancreas = (TISSUES.index(t) for t in ("Brain", "Liver", "Pancreas"))
    rng = np.random.default_rng(0)
    background = "".join(rng.choice(list("ACGT"), 1024))
    rna, protein = "".join(rng.choice(list("ACGT"), 600)), "MAGSTLV" * 10

    def expression(window: str, rna: str, protein: str) -> np.ndarray:
        features = sequence_features(window, rna, protein, rules)
        return log_tpm(expression_components(features, 0.0, rules), rules)

    base = expression(background, rna, protein)
    promoter_start = 512 + rules.promoter_region[0]
    cag = rules.promoter_motifs["cag"]
    with_cag = (
        background[: promoter_start + 50] + cag + background[promoter_start + 50 + len(cag) :]
    )
    assert promoter_sequence(with_cag, rules).count(cag) == 1
    delta = expression(with_cag, rna, protein) - base
    assert delta[brain] > 1.0 and delta[liver] < 0 and np.argmax(delta) == brain
    # A motif downstream of the TSS is in the transcript, not the promoter: no DNA effect.
    downstream = background[:600] + cag + background[600 + len(cag) :]
    np.testing.assert_allclose(expression(downstream, rna, protein), base)

    are = rules.rna_motifs["are"]
    assert (expression(background, rna + are, protein) < base).all()
    assert (expression(background, rna + rules.rna_motifs["ac"] * 2, protein) > base).all()

    basic = expression(background, rna, protein + "K" * 20) - base
    acidic = expression(background, rna, protein + "E" * 20) - base
    assert (basic > 0).all() and (acidic < 0).all() and np.argmax(basic) == pancreas
    neutral = expression(background, rna, "A" * 9)  # net charge 0: no protein term
    np.testing.assert_allclose(expression(background, rna, "") - neutral, rules.noncoding_offset)


def test_variance_shares_and_oracle_at_a_moderate_size(tmp_path):
    summary = simulate_study(tmp_path / "s", n_genes=80, seed=1)
    assert 150 <= summary.n_transcripts <= 400
    assert sum(summary.variance_shares.values()) == pytest.approx(1.0)
    for modality in ("dna", "rna", "protein"):
        assert 0.2 <= summary.variance_shares[modality] <= 0.45, summary.variance_shares
    assert 0.75 <= summary.oracle_r2 <= 0.95


def test_oracle_metrics_against_targets_built_from_the_gct(study, truth):
    transcript_ids, _, sample_ids, tpm = _read_gct(study / "transcript_tpm.gct.gz")
    samples = pl.read_csv(study / "sample_attributes.txt", separator="\t")
    tissue_of = dict(zip(samples["SAMPID"], samples["SMTS"]))
    tissue = np.array([tissue_of[s] for s in sample_ids])
    targets = {t: np.log1p(tpm[:, tissue == t].mean(axis=1)) for t in TISSUES}
    table = pl.DataFrame(
        {"transcript_id": transcript_ids, "split": ["test"] * len(transcript_ids), **targets}
    )
    metrics = oracle_metrics(study / "truth.json", table)
    assert metrics["n_transcripts"] == len(transcript_ids)
    assert metrics["r2"] == pytest.approx(truth["oracle"]["r2"])

    exact = table.with_columns(
        [
            pl.Series(t, [truth["transcripts"][i]["expression"][k] for i in transcript_ids])
            for k, t in enumerate(TISSUES)
        ]
    )
    assert oracle_metrics(study / "truth.json", exact)["r2"] == pytest.approx(1.0)
    unknown = table.with_columns(pl.lit("ENST99999999999.1").alias("transcript_id"))
    with pytest.raises(IsoformerError, match="not in"):
        oracle_metrics(study / "truth.json", unknown)


def test_cli_simulates_and_refuses_a_non_empty_output(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["simulate", "--out", str(out), "--n-genes", "3", "--seed", "1"]) == 0
    assert json.loads((out / "truth.json").read_text())["n_genes"] == 3
    assert main(["simulate", "--out", str(out), "--n-genes", "3"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_build_reads_the_study_and_oracle_matches_on_the_dataset(study, truth, tmp_path):
    dataset = tmp_path / "dataset"
    assert (
        main(
            [
                "build",
                "--fasta",
                str(study / "genome.fa"),
                "--gtf",
                str(study / "annotation.gtf"),
                "--tpm",
                str(study / "transcript_tpm.gct.gz"),
                "--samples",
                str(study / "sample_attributes.txt"),
                "--out",
                str(dataset),
            ]
        )
        == 0
    )
    metrics = oracle_metrics(study / "truth.json", dataset, split=None)
    assert metrics["n_transcripts"] == len(truth["transcripts"])
    assert metrics["r2"] == pytest.approx(truth["oracle"]["r2"], abs=1e-6)
