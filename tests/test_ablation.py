"""`isoformer ablate`: the studies' settings, resuming, and the tables built from finished runs."""

from __future__ import annotations

import json

import polars as pl
import pytest

from isoformer.analysis import ablation
from isoformer.analysis.ablation import (
    RUN_RECORD,
    Setting,
    ablate,
    aggregation_settings,
    kmer_settings,
    modality_gains,
    modality_settings,
    pretraining_settings,
    study_markdown,
)
from isoformer.errors import IsoformerError
from tiny_dataset import TINY_OVERRIDES, write_tiny_dataset


def test_the_modalities_study_has_all_seven_subsets():
    settings = modality_settings("tiny")
    assert [s.name for s in settings] == [
        "DNA", "RNA", "protein", "DNA + RNA", "DNA + protein", "RNA + protein",
        "DNA + RNA + protein"]
    assert settings[4].modalities == ("dna", "protein")
    assert {s.slug for s in settings} == {"dna", "rna", "protein", "dna---rna", "dna---protein",
                                          "rna---protein", "dna---rna---protein"}


def test_the_encoders_study_swaps_only_the_dna_encoder():
    from isoformer.model.config import load_preset

    settings = ablation.encoder_settings("tiny")
    assert [s.name for s in settings] == ["NT-v2", "Enformer", "Borzoi"]
    configs = [load_preset(s.preset).model for s in settings]
    assert [c.encoders["dna"].kind for c in configs] == ["nucleotide_transformer", "enformer",
                                                         "borzoi"]
    assert len({repr(c.encoders["rna"]) for c in configs}) == 1
    assert len({repr(c.encoders["protein"]) for c in configs}) == 1
    assert [s.preset for s in ablation.encoder_settings("paper")] == [
        "paper-nt", "paper", "paper-borzoi"]


def test_every_study_adds_the_kmer_ridge_on_each_modality_set_it_reads():
    kmer = kmer_settings(modality_settings("tiny"))
    assert [s.name for s in kmer] == [
        "k-mer ridge (DNA)", "k-mer ridge (RNA)", "k-mer ridge (protein)",
        "k-mer ridge (DNA + RNA)", "k-mer ridge (DNA + protein)", "k-mer ridge (RNA + protein)",
        "k-mer ridge (DNA + RNA + protein)"]
    assert [s.modalities for s in kmer] == [s.modalities for s in modality_settings("tiny")]
    assert {s.baseline for s in kmer} == {"kmer"} and {s.overrides for s in kmer} == {()}
    # The aggregation kinds all read the preset's three modalities: one ridge.
    (ridge,) = kmer_settings(aggregation_settings("tiny"))
    assert ridge.modalities == ("dna", "rna", "protein")
    assert ablation.study_settings("aggregation", "tiny")[-1] == ridge


def test_the_pretraining_study_refuses_random_against_random():
    with pytest.raises(IsoformerError, match="no pre-trained dna, rna, protein encoder"):
        pretraining_settings("tiny", {})


def test_the_pretraining_study_uses_given_checkpoints_or_the_presets_own():
    settings = pretraining_settings("tiny", {"dna": "d", "rna": "r", "protein": "p"})
    assert [s.name for s in settings] == ["all random", "DNA pre-trained", "RNA pre-trained",
                                          "protein pre-trained", "all pre-trained"]
    rna_only = settings[2].overrides
    assert "model.encoders.rna.checkpoint=r" in rna_only
    assert "model.encoders.dna.init=random" in rna_only
    paper = pretraining_settings("paper", {})  # official checkpoints: the preset's own
    assert "model.encoders.dna.init=random" in paper[0].overrides
    assert paper[-1].overrides == ()


def test_the_table_gives_mean_and_std_over_seeds_and_the_papers_number():
    rows = [{"setting": "RNA", "seed": s, "mean_r2": r2, "mean_spearman": 0.5,
             "isoform_spearman": None, "epochs": 4, "wall_seconds": 30.0}
            for s, r2 in enumerate((0.1, 0.3))]
    text = study_markdown("modalities", rows, [Setting("RNA", "tiny"), Setting("DNA", "tiny")],
                          "tiny")
    line = next(line for line in text.splitlines() if line.startswith("| RNA"))
    # std with ddof 1 of (0.1, 0.3) is 0.1414; 2 seeds x 30 s = 1 minute; the paper's 0.36 / 0.61
    assert line == ("| RNA | 2 | 0.200 +- 0.141 | 0.500 +- 0.000 | n/a | 4.0 | 1.0 | 0.36 | "
                    "0.61 |")
    assert "| DNA" not in text  # no finished run, no row


def test_adding_a_modality_is_measured_over_every_subset_without_it():
    r2 = {frozenset(k.split()): v for k, v in {
        "dna": 0.1, "rna": 0.2, "protein": 0.3, "dna rna": 0.25, "dna protein": 0.35,
        "rna protein": 0.4, "dna rna protein": 0.5}.items()}
    gains = modality_gains(r2)
    # DNA: (0.25 - 0.2) + (0.35 - 0.3) + (0.5 - 0.4); RNA: 0.15 + 0.1 + 0.15; protein: .25 .2 .25
    assert sorted(gains["dna"]) == pytest.approx([0.05, 0.05, 0.1])
    assert sorted(gains["rna"]) == pytest.approx([0.1, 0.15, 0.15])
    assert sorted(gains["protein"]) == pytest.approx([0.2, 0.25, 0.25])
    del r2[frozenset({"dna", "rna"})]  # unmeasured: the additions into and out of it drop out
    assert sorted(modality_gains(r2)["dna"]) == pytest.approx([0.05, 0.1])


def test_the_modalities_table_says_whether_the_papers_order_holds():
    settings = modality_settings("tiny")
    values = {"DNA": -0.08, "RNA": -0.07, "protein": 0.22, "DNA + RNA": -0.15,
              "DNA + protein": 0.21, "RNA + protein": 0.15, "DNA + RNA + protein": 0.06}
    rows = [{"setting": name, "seed": 0, "mean_r2": r2, "mean_spearman": 0.0,
             "isoform_spearman": None, "epochs": 1, "wall_seconds": 1.0}
            for name, r2 in values.items()]
    rows.append({**rows[2], "setting": "k-mer ridge (DNA + RNA + protein)", "mean_r2": 0.9,
                 "epochs": None})  # a baseline is not a deep setting: never "best"
    text = study_markdown("modalities", rows, [*settings, *kmer_settings(settings)], "tiny")
    # DNA: (-0.15 + 0.07) + (0.21 - 0.22) + (0.06 - 0.15) = -0.18 / 3; RNA: (-0.15 + 0.08) +
    # (0.15 - 0.22) + (0.06 - 0.21) = -0.29 / 3; protein: 0.29 + 0.22 + 0.21 = 0.72 / 3;
    # all nine: 0.25 / 9 = +0.028.
    assert ("best is protein (0.220), so all three modalities best: no. Adding a modality "
            "(R2 with it minus without, mean over the subsets measured both ways): DNA -0.060 "
            "(3), RNA -0.097 (3), protein +0.240 (3); +0.028 over all 9 additions, so helps on "
            "average: yes.") in " ".join(text.split())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    data = write_tiny_dataset(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("ablations")
    ablate(data, "tiny-nt", "modalities", seeds=1, out=out,
           overrides=[*TINY_OVERRIDES, "training.max_epochs=1"], progress=False)
    return data, out


def test_a_study_writes_one_row_per_run_its_tables_and_figures(finished):
    _, out = finished
    table = pl.read_csv(out / "modalities.csv")
    assert table["setting"].to_list() == [s.name for s in ablation.study_settings(
        "modalities", "tiny-nt")]
    assert {"mean_r2", "isoform_spearman", "epochs", "wall_seconds", "r2:Brain"} <= set(
        table.columns)
    metrics = json.loads((out / "runs/modalities/dna---rna/seed0/metrics_test.json").read_text())
    assert table.filter(pl.col("setting") == "DNA + RNA")["mean_r2"][0] == pytest.approx(
        metrics["mean"]["r2"])
    for name in ("modalities.md", "modalities.png", "figure3.png"):
        assert (out / name).stat().st_size > 0


def test_the_kmer_rows_are_the_baselines_own_fit_and_evaluation(finished, tmp_path):
    from isoformer.training.baseline import fit_baseline
    from isoformer.training.evaluate import evaluate_run

    data, out = finished
    own = evaluate_run(fit_baseline(data, tmp_path / "ridge", modalities=("rna", "protein")),
                       data, split="test", progress=False)
    table = pl.read_csv(out / "modalities.csv")
    row = table.filter(pl.col("setting") == "k-mer ridge (RNA + protein)")
    assert row["mean_r2"][0] == pytest.approx(own["mean"]["r2"])
    assert row["epochs"][0] is None
    line = next(line for line in (out / "modalities.md").read_text().splitlines()
                if line.startswith("| k-mer ridge (RNA + protein)"))
    assert line.split(" | ")[1] == "1" and line.split(" | ")[5] == "-"  # one fit, no epochs


def test_a_rerun_skips_finished_runs_and_retrains_an_unfinished_one(finished, monkeypatch):
    data, out = finished
    (out / "runs/modalities/rna/seed0" / RUN_RECORD).unlink()  # as if killed before it ended
    trained = []
    from isoformer.training import fit

    original = fit.train
    monkeypatch.setattr(fit, "train", lambda *a, **k: trained.append(k["modalities"])
                        or original(*a, **k))
    ablate(data, "tiny-nt", "modalities", seeds=1, out=out,
           overrides=[*TINY_OVERRIDES, "training.max_epochs=1"], progress=False)
    assert trained == [("rna",)]
    assert len(pl.read_csv(out / "modalities.csv")) == 14


def test_the_kmer_ridge_is_fitted_for_the_first_seed_only(finished, monkeypatch):
    data, out = finished
    calls = []
    monkeypatch.setattr(ablation, "run_setting",
                        lambda data, out, study, setting, seed, *a: calls.append(
                            (setting.baseline, seed)))
    ablate(data, "tiny-nt", "aggregation", seeds=[3, 4], out=out, progress=False)
    assert calls.count(("kmer", 3)) == 1 and ("kmer", 4) not in calls
    assert calls.count((None, 4)) == len(aggregation_settings("tiny-nt"))
