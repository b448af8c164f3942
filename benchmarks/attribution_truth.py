"""Does attribution find what the simulation planted? ISM of trained runs against truth.json.

The measurement is `isoformer.analysis.attribution_truth` (the cases, the rules' own ISM through
the study's expression functions, `ratio` and `r`); this driver runs it for every run given,
prints the table (mean, median, share of transcripts above 1 / 0 per run and modality), and
writes OUT/attribution_truth.json with one example figure per run and modality
(OUT/<run>_<modality>.png, the signal marked under the track).

    python benchmarks/attribution_truth.py --data DATASET --truth STUDY/truth.json --out DIR \\
        --run RUN [--run RUN ...] [--n 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from isoformer.analysis.attribution_truth import PROTEIN_SPAN, RNA_SPAN, measure_run
from isoformer.data.expression_model import ExpressionRules
from isoformer.files import write_json_atomic
from isoformer.training.run import Run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument("--data", type=Path, required=True, help="the runs' dataset")
    parser.add_argument("--truth", type=Path, required=True, help="the study's truth.json")
    parser.add_argument("--out", type=Path, required=True, help="directory for JSON + figures")
    parser.add_argument("--n", type=int, default=10, help="transcripts per modality")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    truth = json.loads(args.truth.read_text())
    rules = ExpressionRules.from_json(truth["rules"])
    start = time.perf_counter()
    report = {
        "machine": f"{platform.machine()}, {args.threads} torch thread(s)",
        "n": args.n, "rna_span": RNA_SPAN, "protein_span": PROTEIN_SPAN,
        "runs": {run.name: measure_run(Run.open(run), args.data, rules, truth, args.n, args.out)
                 for run in args.run},
    }
    report["seconds"] = round(time.perf_counter() - start, 1)
    write_json_atomic(report, args.out / "attribution_truth.json")
    print("| run | modality | n | ratio mean (median; share > 1) | r mean (median; share > 0) |")
    print("|---|---|---:|---:|---:|")
    for name, modalities in report["runs"].items():
        for modality, result in modalities.items():
            ratio, r = result["ratio"], result["r"]
            print(f"| {name} | {modality} | {result['n']} | {_fmt(ratio, 'share_above_1')} | "
                  f"{_fmt(r, 'share_above_0')} |")
    print(f"{report['seconds']:.0f} s; written: {args.out / 'attribution_truth.json'}")
    return report


def _fmt(values: dict[str, float | None], share: str) -> str:
    if values["mean"] is None:
        return "n/a"
    return f"{values['mean']:.2f} ({values['median']:.2f}; {values[share]:.0%})"


if __name__ == "__main__":
    main()
