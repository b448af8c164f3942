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
    Motif,
    ProteinFeature,
    expression_components,
    log_tpm,
    noise_free_expression,
    promoter_sequence,
    sequence_features,
)
from isoformer.data.gencode import read_gtf, transcript_sequences, translate
from isoformer.data.genome import Genome, reverse_complement
from isoformer.data.rule_family import PromoterFamily, RuleFamily, load_rule_family
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
    assert truth["family"] == RuleFamily().to_json()
    rules = ExpressionRules.from_json(truth["rules"])
    assert rules.to_json() == truth["rules"]
    genome = Genome(study / "genome.fa")
    for transcript_id, t in gtf.items():
        record = truth["transcripts"][transcript_id]
        sequences = transcript_sequences(t, genome)
        window = genome.window(t.chrom, t.tss, t.strand, 1024)
        features = sequence_features(window, sequences.rna, sequences.protein, rules)
        assert dataclasses.asdict(features) == record["features"]
        components = expression_components(features, record["components"]["gene"], rules)
        for name in ("dna", "rna", "protein"):
            np.testing.assert_allclose(components[name], record["components"][name], atol=1e-6)
        np.testing.assert_allclose(log_tpm(components, rules), record["log_tpm"], atol=1e-5)
        np.testing.assert_allclose(
            noise_free_expression(np.array(record["log_tpm"])), record["expression"]
        )
    counted = Counter()
    for record in truth["transcripts"].values():
        counted.update(record["features"]["promoter_motifs"])
        counted.update(record["features"]["rna_motifs"])
    motifs = [*rules.promoter_motifs, *rules.rna_motifs]
    assert all(counted[m.name] > 0 for m in motifs)
    # Occurrences count planted copies and chance ones: never fewer than were planted.
    for name, numbers in truth["promoter_occurrences"].items():
        assert numbers["counted"] >= numbers["planted"] > 0, name


def test_rules_are_drawn_per_seed_from_the_documented_family(tmp_path):
    drawn = []
    for seed in (1, 2):
        simulate_study(tmp_path / str(seed), n_genes=3, seed=seed)
        drawn.append(read_truth(tmp_path / str(seed) / "truth.json")["rules"])
    family = RuleFamily()
    for rules in drawn:
        low, high = family.promoter.n_motifs
        assert low <= len(rules["promoter_motifs"]) <= high
        for motif in rules["promoter_motifs"]:
            assert 6 <= len(motif["sequence"]) <= 12 and motif["both_strands"]
        assert rules["rna_motifs"][0]["sequence"] == "ATTTA"
        assert {f["name"] for f in rules["protein_features"]} <= set(family.protein.features)
    sequences = [{m["sequence"] for m in rules["promoter_motifs"]} for rules in drawn]
    assert sequences[0] != sequences[1]


def test_a_rules_file_overrides_the_family(tmp_path, capsys):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "promoter: {sequences: [TATAAAAG, GGGCGG], copies_mean: 2.0}\n"
        "rna: {n_motifs: [0, 0], length_effect: [0.0, 0.0]}\n"
        "noise: {sample_log_sd: 0.1}\n"
    )
    out = tmp_path / "study"
    assert main(["simulate", "--out", str(out), "--n-genes", "4", "--rules", str(rules_file)]) == 0
    truth = read_truth(out / "truth.json")
    rules = truth["rules"]
    assert [m["sequence"] for m in rules["promoter_motifs"]] == ["TATAAAAG", "GGGCGG"]
    assert [m["name"] for m in rules["rna_motifs"]] == ["are"]
    assert rules["rna_length_weights"] == [0.0] * 30 and rules["sample_log_sd"] == 0.1
    assert truth["family"]["promoter"]["copies_mean"] == 2.0

    rules_file.write_text("promoter: {motif_lenght: [6, 8]}\n")
    assert main(["simulate", "--out", str(tmp_path / "x"), "--rules", str(rules_file)]) == 2
    err = capsys.readouterr().err
    assert "rules.yaml" in err and "motif_lenght" in err and not (tmp_path / "x").exists()
    with pytest.raises(IsoformerError, match="not ACGT"):
        RuleFamily(promoter=PromoterFamily(sequences=["TATAXA"]))
    crowded = tmp_path / "crowded.yaml"
    crowded.write_text("promoter: {region: [-60, -40], copies_mean: 3.0, motif_length: [12, 12]}\n")
    with pytest.raises(IsoformerError, match="do not fit in 20 bp"):
        simulate_study(tmp_path / "crowded", n_genes=2, family=load_rule_family(crowded))
    with pytest.raises(IsoformerError, match="promoter.motif_length \\[12, 6\\]"):
        RuleFamily(promoter=PromoterFamily(motif_length=(12, 6)))


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


def _hand_rules() -> ExpressionRules:
    """Rules whose every effect is 1.0 in one tissue (or a round number): answers by hand."""
    brain, liver, pancreas = (TISSUES.index(t) for t in ("Brain", "Liver", "Pancreas"))

    def one_hot(index: int, value: float = 1.0) -> list[float]:
        return [value if k == index else 0.0 for k in range(len(TISSUES))]

    return ExpressionRules(
        tissues=list(TISSUES), intercept=2.0, promoter_region=(-300, -20),
        promoter_motifs=[Motif("tf", "TGACTAAGG", one_hot(brain), both_strands=True)],
        rna_motifs=[Motif("are", "ATTTA", one_hot(liver, -0.5), both_strands=False)],
        rna_length_weights=one_hot(liver, -0.25),
        protein_features=[ProteinFeature("charge", one_hot(pancreas, 2.0), center=0.1, scale=0.5)],
        noncoding_offset=-1.0, gene_sd=0.0, gene_tissue_sd=0.0, sample_log_sd=0.5,
    )


def test_each_modality_moves_expression_by_its_rule():
    rules = _hand_rules()
    brain, liver, pancreas = (TISSUES.index(t) for t in ("Brain", "Liver", "Pancreas"))
    background = "C" * 1024  # no motif anywhere, no chance occurrence
    rna, protein = "G" * 1000, "KAAAAAAAAA"  # 1,000 nt: log2(length / 1000) = 0; charge 0.1

    def expression(window: str, rna: str, protein: str) -> np.ndarray:
        features = sequence_features(window, rna, protein, rules)
        return log_tpm(expression_components(features, np.zeros(30), rules), rules)

    base = expression(background, rna, protein)
    np.testing.assert_allclose(base, 2.0)  # charge at the centre: no protein term
    motif = rules.promoter_motifs[0].sequence
    at = 512 - 100  # 100 bp upstream of the TSS, inside [-300, -20)
    forward = background[:at] + motif + background[at + len(motif):]
    reverse = background[:at] + reverse_complement(motif) + background[at + len(motif):]
    both = forward[: at - 50] + motif + forward[at - 50 + len(motif):]
    assert promoter_sequence(forward, rules).count(motif) == 1
    for window, copies in ((forward, 1), (reverse, 1), (both, 2)):
        delta = expression(window, rna, protein) - base
        assert delta[brain] == pytest.approx(copies) and np.abs(np.delete(delta, brain)).max() == 0
    # A motif downstream of the TSS is in the transcript, not the promoter: no DNA effect.
    downstream = background[:600] + motif + background[600 + len(motif):]
    np.testing.assert_allclose(expression(downstream, rna, protein), base)

    # RNA: every ATTTA counts, overlapping ones included (ATTTATTTA holds two); length doubled.
    delta = expression(background, rna[:-9] + "ATTTATTTA", protein) - base
    assert delta[liver] == pytest.approx(-1.0)
    assert expression(background, rna * 2, protein)[liver] - base[liver] == pytest.approx(-0.25)

    # Protein: charge (K + R - D - E) / length, standardised by centre 0.1 and scale 0.5.
    basic = expression(background, rna, "K" * 6 + "A" * 4)  # charge 0.6: +1 sd
    assert basic[pancreas] - base[pancreas] == pytest.approx(2.0)
    np.testing.assert_allclose(expression(background, rna, "") - base, -1.0)  # non-coding


def test_calibration_measures_the_protein_features():
    rules = _hand_rules().calibrated(["KKAA", "AAAA", ""])  # charges 0.5 and 0.0
    feature = rules.protein_features[0]
    assert feature.center == pytest.approx(0.25) and feature.scale == pytest.approx(0.25)


def test_variance_shares_and_oracle_at_a_moderate_size(tmp_path):
    summary = simulate_study(tmp_path / "s", n_genes=80, seed=1)
    assert 150 <= summary.n_transcripts <= 400
    assert sum(summary.variance_shares.values()) == pytest.approx(1.0)
    for modality in ("dna", "rna", "protein"):
        assert 0.1 <= summary.variance_shares[modality] <= 0.6, summary.variance_shares
        assert 0.05 <= summary.oracle_r2_by_modality[modality] < summary.oracle_r2
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
    for modality, recorded in truth["oracle_by_modality"].items():
        alone = oracle_metrics(study / "truth.json", dataset, split=None, modalities=[modality])
        assert alone["r2"] == pytest.approx(recorded["r2"], abs=1e-6)


def test_background_motif_grammar_recurs_outside_the_scored_promoters(study, truth):
    background, family = truth["background"], RuleFamily().background
    assert truth["family"]["background"]["motif_rate"] == family.motif_rate > 0
    motifs = background["motifs"]
    promoter = {m["name"]: m["sequence"] for m in truth["rules"]["promoter_motifs"]}
    assert {name: motifs[name] for name in background["promoter_motifs"]} == promoter
    low, high = family.n_decoys
    assert low <= len(background["decoys"]) <= high
    assert not {motifs[d] for d in background["decoys"]} & set(promoter.values())
    # Planted at the documented rate (Poisson per stretch, few dropped) in both kinds of region.
    planted = sum(background["sites"].values())
    assert planted == sum(background["by_region"].values())
    assert set(background["by_region"]) == {"intronic", "intergenic"}
    per_kb = planted / (background["searched_bases"] / 1000)
    assert abs(per_kb - family.motif_rate) < 0.4 and background["dropped"] < 0.05 * planted
    assert set(background["sites"]) == {*background["promoter_motifs"], *background["decoys"],
                                        *(pair["name"] for pair in background["pairs"])}

    genome = Genome(study / "genome.fa")
    text = "N".join(genome.fetch(c, 0, genome.chrom_length(c)) for c in genome.chroms)
    for name in background["decoys"]:  # in both orientations
        assert text.count(motifs[name]) >= 3 and text.count(reverse_complement(motifs[name])) >= 3
    for pair in background["pairs"]:  # at their fixed spacing
        element = (f"{motifs[pair['first']]}[ACGT]{{{pair['spacing']}}}"
                   f"{motifs[pair['second']]}")
        found = len(re.findall(element, text))
        found += len(re.findall(element, reverse_complement(text)))
        assert found >= background["sites"][pair["name"]] > 0
    # The promoter motifs recur outside the promoters too (as single sites and in pairs).
    for name, sequence in promoter.items():
        genome_wide = text.count(sequence) + text.count(reverse_complement(sequence))
        assert genome_wide >= background["sites"][name] > 0, name


def test_the_background_grammar_changes_only_intronic_and_intergenic_bases(tmp_path):
    from isoformer.data.rule_family import BackgroundFamily

    simulate_study(tmp_path / "on", n_genes=6, seed=5)
    simulate_study(tmp_path / "off", n_genes=6, seed=5,
                   family=RuleFamily(background=BackgroundFamily(motif_rate=0.0)))
    on, off = (read_truth(tmp_path / name / "truth.json") for name in ("on", "off"))
    assert sum(off["background"]["sites"].values()) == 0 < sum(on["background"]["sites"].values())
    assert (tmp_path / "on" / "annotation.gtf").read_bytes() == (
        tmp_path / "off" / "annotation.gtf").read_bytes()  # same genes, same coordinates
    assert on["rules"] == off["rules"] and on["promoter_occurrences"] == off["promoter_occurrences"]
    for transcript_id, record in on["transcripts"].items():
        if record["transcript_type"] != "retained_intron":  # the one RNA that holds an intron
            assert record["features"] == off["transcripts"][transcript_id]["features"]
    genome_on, genome_off = Genome(tmp_path / "on" / "genome.fa"), Genome(tmp_path / "off" /
                                                                            "genome.fa")
    gtf = read_gtf(tmp_path / "on" / "annotation.gtf").transcripts
    for t in gtf.values():  # exons and the 400-bp promoter flank before each TSS untouched
        for start, end in t.exons if t.transcript_type != "retained_intron" else ():
            assert genome_on.fetch(t.chrom, start, end) == genome_off.fetch(t.chrom, start, end)
        window_on = genome_on.window(t.chrom, t.tss, t.strand, 1024)
        window_off = genome_off.window(t.chrom, t.tss, t.strand, 1024)
        assert window_on[512 - 400 : 512] == window_off[512 - 400 : 512]
    assert genome_on.fetch("chr1", 0, 20000) != genome_off.fetch("chr1", 0, 20000)
