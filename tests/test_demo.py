"""`isoformer demo` and the modality-subset oracle it reports.

The oracle tests use a hand-written truth.json (2 tissues, 3 transcripts) whose held-at-mean
expression is derived on paper; the demo's plumbing runs on a tiny study for one epoch, and the
real demo (its claim that fusion wins) runs behind the `slow` marker.
"""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from isoformer.analysis.demo import (
    BASELINE_MODEL,
    BASELINE_RUN,
    DEMO_MARGIN,
    DEMO_MODELS,
    FULL_MODEL,
    DemoResult,
    DemoRow,
    run_demo,
    summary_markdown,
)
from isoformer.analysis.oracle import oracle_metrics
from isoformer.cli import main
from isoformer.constants import MODALITIES
from isoformer.data.simulate import TRUTH_FORMAT_VERSION
from isoformer.errors import IsoformerError

TISSUES = ("Liver", "Brain")


def _transcript(baseline: float, dna: float, rna: float, protein: float) -> dict:
    # intercept 1.0; the same term in both tissues except rna, which flips sign in Brain.
    components = {"gene": [baseline, baseline], "dna": [dna, dna], "rna": [rna, -rna],
                  "protein": [protein, protein]}
    log_tpm = [1.0 + baseline + dna + components["rna"][k] + protein for k in range(2)]
    return {
        "gene_id": "G",
        "components": components,
        "log_tpm": log_tpm,
        "expression": [math.log1p(math.exp(v)) for v in log_tpm],
    }


@pytest.fixture()
def truth(tmp_path):
    # Means over the three transcripts: baseline 0, dna 0, rna 0, protein 0.
    transcripts = {
        "T1": _transcript(baseline=0.3, dna=1.0, rna=0.5, protein=-0.2),
        "T2": _transcript(baseline=-0.3, dna=-1.0, rna=0.0, protein=0.4),
        "T3": _transcript(baseline=0.0, dna=0.0, rna=-0.5, protein=-0.2),
    }
    path = tmp_path / "truth.json"
    path.write_text(
        json.dumps(
            {"format_version": TRUTH_FORMAT_VERSION, "tissues": list(TISSUES),
             "rules": {"intercept": 1.0}, "transcripts": transcripts}
        )
    )
    return path


def _table(targets: dict[str, tuple[float, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "transcript_id": list(targets),
            "split": ["test"] * len(targets),
            **{t: [targets[i][k] for i in targets] for k, t in enumerate(TISSUES)},
        }
    )


def test_oracle_of_a_modality_subset_holds_the_other_terms_at_their_mean(truth):
    # DNA only: log_tpm = 1 + dna (baseline, rna and protein at their mean, 0).
    dna_only = _table({i: (math.log1p(math.exp(1 + d)),) * 2 for i, d in
                       [("T1", 1.0), ("T2", -1.0), ("T3", 0.0)]})
    assert oracle_metrics(truth, dna_only, modalities=["dna"])["r2"] == pytest.approx(1.0)
    # The same targets are not what the DNA + RNA oracle predicts (RNA moves T1 and T3).
    assert oracle_metrics(truth, dna_only, modalities=["dna", "rna"])["r2"] < 0.99
    # DNA + RNA: Liver 1 + dna + rna, Brain 1 + dna - rna.
    dna_rna = _table(
        {
            "T1": (math.log1p(math.exp(2.5)), math.log1p(math.exp(1.5))),
            "T2": (math.log1p(math.exp(0.0)), math.log1p(math.exp(0.0))),
            "T3": (math.log1p(math.exp(0.5)), math.log1p(math.exp(1.5))),
        }
    )
    assert oracle_metrics(truth, dna_rna, modalities=["dna", "rna"])["r2"] == pytest.approx(1.0)


def test_oracle_without_modalities_is_the_noise_free_expression(truth):
    records = json.loads(truth.read_text())["transcripts"]
    exact = _table({i: tuple(r["expression"]) for i, r in records.items()})
    assert oracle_metrics(truth, exact)["r2"] == pytest.approx(1.0)
    # All three sequences still miss the gene baselines.
    assert oracle_metrics(truth, exact, modalities=["dna", "rna", "protein"])["r2"] < 0.99
    with pytest.raises(IsoformerError, match="not in"):
        oracle_metrics(truth, _table({"T9": (0.0, 0.0)}))


def _result(tmp_path, full: float, singles: tuple[float, float, float],
            baseline: float = 0.25) -> DemoResult:
    rows = [
        DemoRow(name, modalities, r2, 0.5, None, 0.9, 3)
        for (name, modalities), r2 in zip(DEMO_MODELS.items(), (full, *singles))
    ]
    rows.append(DemoRow(BASELINE_MODEL, MODALITIES, baseline, 0.4, None, 0.9, None))
    return DemoResult(tmp_path, rows, n_test_transcripts=40, noise_free_oracle_r2=0.95)


def test_verdict_needs_the_margin_over_every_single_modality(tmp_path):
    winning = _result(tmp_path, 0.60, (0.30, 0.54, 0.20))
    assert winning.margins == pytest.approx({"DNA only": 0.30, "RNA only": 0.06,
                                             "protein only": 0.40})
    assert winning.fusion_wins and "holds" in summary_markdown(winning)
    assert winning.baseline_margin == pytest.approx(0.35)
    assert "beats the k-mer baseline: yes (+0.350)" in summary_markdown(winning)
    losing = _result(tmp_path, 0.60, (0.30, 0.60 - DEMO_MARGIN + 0.01, 0.20), baseline=0.7)
    assert not losing.fusion_wins and "FAILS" in summary_markdown(losing)
    assert "beats the k-mer baseline: no (-0.100)" in summary_markdown(losing)
    assert f"| {BASELINE_MODEL} | 0.700 | 0.400 | n/a | 0.900 | - |" in summary_markdown(losing)


def test_demo_runs_end_to_end_on_a_small_study(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--n-genes", "24", "--max-epochs", "1",
                 "--no-progress", "--check"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == (0 if summary["fusion_wins"] else 1)  # --check: the verdict is the exit code
    assert [m["model"] for m in summary["models"]] == [*DEMO_MODELS, BASELINE_MODEL]
    full = summary["models"][0]
    assert full["model"] == FULL_MODEL and full["modalities"] == ["dna", "rna", "protein"]
    for model in summary["models"]:
        name = BASELINE_RUN if model["model"] == BASELINE_MODEL else "-".join(model["modalities"])
        run = out / "runs" / name
        metrics = json.loads((run / "metrics_test.json").read_text())
        assert model["r2"] == metrics["mean"]["r2"]
        oracle = oracle_metrics(out / "study" / "truth.json", out / "dataset", "test",
                                model["modalities"])
        assert model["oracle_r2"] == pytest.approx(oracle["r2"])
    assert (out / "demo_r2.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "| DNA + RNA + protein |" in printed and (out / "summary.md").read_text() in printed
    # A second demo into the same directory is refused, not mixed with the first.
    assert main(["demo", "--out", str(out), "--n-genes", "24"]) == 2


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured 2026-12-01: protein only beats the full model by "
                   "0.06 R2 on the default study (benchmarks/RESULTS.md); strict, so a fix shows")
def test_full_model_beats_every_single_modality_on_the_default_study(tmp_path):
    result = run_demo(tmp_path / "demo", progress=False)
    assert result.fusion_wins, summary_markdown(result)
