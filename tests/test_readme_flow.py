"""The README's GTEx flow on the embedded default: build at one DNA window, train at another,
export with defaults, predict every record; `export --run` writes the run's window."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from isoformer.cli import main

BUILD_WINDOW = 12_288  # `build`'s default, as in the README
RUN_WINDOW = 1024  # the tiny preset's


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    study, data, run = root / "study", root / "gtex", root / "runs" / "tiny"
    assert main(["simulate", "--out", str(study), "--n-genes", "24"]) == 0
    assert main(["build", "--fasta", str(study / "genome.fa"),
                 "--gtf", str(study / "annotation.gtf"),
                 "--tpm", str(study / "transcript_tpm.gct.gz"),
                 "--samples", str(study / "sample_attributes.txt"), "--out", str(data),
                 "--val-fraction", "0.2", "--test-fraction", "0.2"]) == 0
    assert json.loads((data / "metadata.json").read_text())["dna_length"] == BUILD_WINDOW
    assert main(["train", "--data", str(data), "--preset", "tiny", "--out", str(run),
                 "--max-epochs", "1", "--no-progress"]) == 0
    return root, data, run


def test_predict_accepts_what_export_writes(flow, capsys):
    root, data, run = flow
    exported, predicted = root / "test.jsonl", root / "predictions.jsonl"
    assert main(["export", "--data", str(data), "--split", "test", "--limit", "100",
                 "--output", str(exported)]) == 0
    records = _lines(exported)
    assert records and {len(r["dna_sequence"]) for r in records} == {BUILD_WINDOW}
    assert main(["predict", "--run", str(run), "--input", str(exported),
                 "--output", str(predicted), "--device", "cpu"]) == 0
    outputs = _lines(predicted)
    assert len(outputs) == len(records)
    assert all("error" not in o and len(o["predicted_expression"]) == 30 for o in outputs)

    # The same transcripts scored by `evaluate` on the dataset (windows read at the run's length).
    assert main(["evaluate", "--run", str(run), "--data", str(data), "--split", "test"]) == 0
    evaluated = pl.read_parquet(run / "predictions_test.parquet")
    order = {t: i for i, t in enumerate(evaluated["transcript_id"].to_list())}
    table = evaluated.drop("transcript_id", "gene_id").to_numpy()
    expected = table[[order[o["transcript_id"]] for o in outputs]]
    np.testing.assert_allclose([o["predicted_expression"] for o in outputs], expected,
                               rtol=1e-5, atol=1e-6)


def test_export_at_the_runs_window_equals_the_centre_of_wider_windows(flow):
    """Genome.window puts the TSS at len // 2 on both strands, so the centre 1,024 bp of a
    12,288-bp window are the 1,024-bp window, and predictions from either file are the same."""
    root, data, run = flow
    wide, narrow = root / "wide.jsonl", root / "narrow.jsonl"
    assert main(["export", "--data", str(data), "--split", "valid", "--output", str(wide)]) == 0
    assert main(["export", "--data", str(data), "--split", "valid", "--run", str(run),
                 "--output", str(narrow)]) == 0
    wide_records, narrow_records = _lines(wide), _lines(narrow)
    strands = set(pl.read_parquet(data / "transcripts.parquet")["strand"])
    assert strands == {"+", "-"}
    left = BUILD_WINDOW // 2 - RUN_WINDOW // 2
    for w, n in zip(wide_records, narrow_records, strict=True):
        assert len(n["dna_sequence"]) == RUN_WINDOW
        assert n["dna_sequence"] == w["dna_sequence"][left : left + RUN_WINDOW]
    outputs = {}
    for name, path in (("wide", wide), ("narrow", narrow)):
        out = root / f"{name}.out.jsonl"
        assert main(["predict", "--run", str(run), "--input", str(path), "--output", str(out)]) == 0
        outputs[name] = [o["predicted_expression"] for o in _lines(out)]
    np.testing.assert_array_equal(outputs["wide"], outputs["narrow"])

    odd = root / "odd.jsonl"
    assert main(["export", "--data", str(data), "--split", "valid", "--run", str(run),
                 "--dna-length", "1501", "--output", str(odd)]) == 0  # --dna-length wins
    left = BUILD_WINDOW // 2 - 1501 // 2  # odd inside even: the TSS still lands at 1501 // 2
    for w, o in zip(wide_records, _lines(odd), strict=True):
        assert o["dna_sequence"] == w["dna_sequence"][left : left + 1501]
