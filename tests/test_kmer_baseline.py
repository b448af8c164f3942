"""The k-mer ridge baseline: counts by hand, a planted rule recovered, a run that evaluate takes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_dataset import TISSUES, write_tiny_dataset

from isoformer.cli import main
from isoformer.errors import IsoformerError
from isoformer.model.kmer_baseline import (
    KmerBaseline,
    KmerBaselineConfig,
    canonical_columns,
    kmer_counts,
)
from isoformer.training.baseline import fit_baseline
from isoformer.training.run import Run


def test_kmer_counts_by_hand():
    # AACGTN A: 2-mers AA, AC, CG, GT (GN, NA skipped); index = 4 * first + second.
    counts = kmer_counts("AACGTNA", 2)
    expected = np.zeros(16)
    expected[[0, 1, 6, 11]] = 1  # AA=0, AC=1, CG=6, GT=11
    np.testing.assert_array_equal(counts, expected)
    assert kmer_counts("aacg", 2).sum() == 3  # soft-masked bases count as bases
    assert kmer_counts("AC", 3).sum() == 0


def test_canonical_columns_merge_reverse_complements():
    columns = canonical_columns(2)
    index = {"".join(p): 4 * "ACGT".index(p[0]) + "ACGT".index(p[1])
             for p in ("AA", "TT", "AC", "GT", "CG", "GC")}
    assert columns[index["AA"]] == columns[index["TT"]]
    assert columns[index["AC"]] == columns[index["GT"]]
    assert columns[index["CG"]] != columns[index["GC"]]  # both palindromes: own columns
    assert columns.max() + 1 == 10  # (16 + 4 palindromes) / 2


def _records(rng: np.random.Generator, n: int) -> tuple[list[dict], np.ndarray]:
    """Random sequences; tissue 0 = 0.5 x ATTTA copies in the RNA, tissue 1 = share of cysteine."""
    records, targets = [], []
    for _ in range(n):
        rna = "".join(rng.choice(list("ACG"), 200))  # no T: ATTTA only where planted
        copies = int(rng.integers(0, 4))
        rna = rna[: 200 - 5 * copies] + "ATTTA" * copies
        protein = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 50))
        records.append({"dna_sequence": "".join(rng.choice(list("ACGT"), 64)),
                        "rna_sequence": rna, "protein_sequence": protein})
        targets.append([0.5 * copies, 10 * protein.count("C") / 50])
    return records, np.array(targets)


def test_a_planted_linear_rule_is_recovered_and_penalties_come_from_validation():
    rng = np.random.default_rng(0)
    config = KmerBaselineConfig(tissues=["a", "b"], dna_length=64, dna_k=3, rna_k=5,
                                alphas=[1e-3, 1.0, 1e6])
    train, train_targets = _records(rng, 300)
    valid, valid_targets = _records(rng, 100)
    test, test_targets = _records(rng, 100)
    baseline = KmerBaseline.fit(config, train, train_targets, valid, valid_targets)
    predicted = baseline.predict(test)
    r2 = 1 - ((predicted - test_targets) ** 2).sum(0) / ((test_targets - test_targets.mean(0)) ** 2
                                                          ).sum(0)
    assert (r2 > 0.9).all(), r2
    assert (baseline.state["alpha"] < 1e6).all()  # the huge penalty (predict the mean) loses

    # Pure-noise targets: validation picks the largest penalty, which predicts the mean.
    noise = rng.normal(size=(300, 2))
    shrunk = KmerBaseline.fit(config, train, noise, valid, rng.normal(size=(100, 2)))
    assert (shrunk.state["alpha"] == 1e6).all()


def test_fit_baseline_writes_a_run_that_evaluate_and_predict_accept(tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "data")
    out = tmp_path / "kmer"
    assert main(["baseline", "--data", str(data), "--out", str(out), "dna_length=96",
                 "dna_k=3", "rna_k=3"]) == 0
    run = Run.open(out)
    assert run.is_baseline and run.tissues == TISSUES and run.dna_length == 96
    summary = run.summary()
    assert set(summary["alpha"]) == set(TISSUES) and summary["n_features"] == 32 + 65 + 22

    assert main(["evaluate", "--run", str(out), "--data", str(data), "--split", "test"]) == 0
    report = json.loads((out / "metrics_test.json").read_text())
    assert report["n_transcripts"] == 5

    # predict: the exported windows (the dataset's 96 bp) give the evaluated predictions.
    jsonl = tmp_path / "test.jsonl"
    assert main(["export", "--data", str(data), "--split", "test", "--output", str(jsonl)]) == 0
    predictions = tmp_path / "predictions.jsonl"
    assert main(["predict", "--run", str(out), "--input", str(jsonl), "--output",
                 str(predictions)]) == 0
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    model = run.load_model()
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    np.testing.assert_allclose([r["predicted_expression"] for r in rows],
                               model.predict(records), rtol=1e-6)

    # Reloaded from disk: the same predictions, bit for bit.
    again = Run.open(out).load_model().predict(records)
    np.testing.assert_array_equal(again, model.predict(records))

    capsys.readouterr()
    assert main(["baseline", "--data", str(data), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(IsoformerError, match="unknown baseline kind"):
        fit_baseline(data, tmp_path / "other", kind="cnn")
    with pytest.raises(IsoformerError, match="dna_k"):
        fit_baseline(data, tmp_path / "other", overrides=["dna_k=12"])
