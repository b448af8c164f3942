"""Oracle scores of a simulated study: what a perfect model of some sequences would reach.

The simulation (`isoformer.data.simulate`) records every transcript's noise-free expression and
its terms in truth.json; scoring them against a built dataset's targets bounds what any model of
the same sequences can reach on the same transcripts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from isoformer.data.dataset import read_transcripts
from isoformer.data.expression_model import COMPONENTS, oracle_expression
from isoformer.data.simulate import read_truth
from isoformer.errors import IsoformerError
from isoformer.metrics import mean_metrics


def oracle_metrics(
    truth_path: str | Path,
    data: str | Path | pl.DataFrame,
    split: str | None = "test",
    modalities: Sequence[str] | None = None,
) -> dict[str, float]:
    """Mean-over-tissues R2 / Spearman / Pearson of the noise-free expression against the targets.

    data: a dataset directory from `build` or its transcripts table. Transcripts of the split
    without a truth entry raise IsoformerError (the dataset is not from this simulation).
    modalities: score what those sequences alone can explain: every other term of `log_tpm`
    (the other sequences' terms and the gene effects, which no sequence carries) is held at its
    mean over all simulated transcripts. None scores the full noise-free expression.
    Returns {"r2", "spearman", "pearson", "n_transcripts"}.
    """
    truth = read_truth(truth_path)
    if isinstance(data, pl.DataFrame):
        table = data if split is None else data.filter(pl.col("split") == split)
    else:
        table = read_transcripts(data, split)
    tissues = tuple(truth["tissues"])
    missing = [t for t in tissues if t not in table.columns]
    if missing:
        raise IsoformerError(f"the dataset has no target column for {', '.join(missing)}")
    ids = table["transcript_id"].to_list()
    unknown = [i for i in ids if i not in truth["transcripts"]]
    if unknown:
        raise IsoformerError(
            f"{len(unknown)} transcripts (e.g. {unknown[0]}) are not in {truth_path}"
        )
    if modalities is None:
        predicted = np.array([truth["transcripts"][i]["expression"] for i in ids])
    else:
        everyone = list(truth["transcripts"].values())
        components = {name: np.array([r["components"][name] for r in everyone])
                      for name in COMPONENTS}
        oracle = oracle_expression(components, modalities, truth["rules"]["intercept"])
        row = {transcript_id: i for i, transcript_id in enumerate(truth["transcripts"])}
        predicted = oracle[[row[i] for i in ids]]
    observed = table.select(tissues).to_numpy().astype(np.float64)
    return {**mean_metrics(predicted, observed, tissues), "n_transcripts": len(ids)}
