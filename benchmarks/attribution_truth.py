"""Does attribution find what the simulation planted? ISM of trained runs against truth.json.

For the first N test transcripts of the dataset that carry a modality's signal in its span, ISM
(`isoformer.analysis.attribution.ism_scores`, target: the mean over tissues) with each run's
model, for every modality the run reads, beside the simulation's own rule scored by the same
convention (`truth_ism_scores`: the rule of that modality's term of the noise-free log TPM applied
to every mutant, with each motif's or feature's weight averaged over the tissues):

- dna: span = the rules' promoter region (bp from the TSS, e.g. -380..-40, of the run's window);
  signal = the bases of promoter-motif occurrences there (either strand)
- rna: span = up to RNA_SPAN nt of the 3'UTR around its first RNA-motif occurrence (ATTTA, ...);
  signal = the bases of RNA-motif occurrences in it
- protein: span = the first PROTEIN_SPAN residues; signal = the residues a protein feature of the
  rules counts (e.g. K R D E for charge, C for cysteine)

Per transcript: `ratio` = mean |score| on the signal / mean |score| elsewhere in the span (about
1 for a model blind to the signal), `r` = Pearson correlation of the model's scores with the
truth's over the span (about 0 for a blind model). Printed as a table (mean, median, share of
transcripts above 1 / 0), written to OUT/attribution_truth.json with one example figure per run
and modality (OUT/<run>_<modality>.png, the signal marked under the track).

    python benchmarks/attribution_truth.py --data DATASET --truth STUDY/truth.json --out DIR \\
        --run RUN [--run RUN ...] [--n 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from isoformer.analysis.attribution import (
    MUTATION_ALPHABETS,
    Target,
    evaluating,
    ism_position_scores,
    ism_scores,
)
from isoformer.analysis.attribution_plot import RnaRegions, plot_attribution
from isoformer.constants import DNA_SEQUENCE, PROTEIN_SEQUENCE, RNA_SEQUENCE, SEQUENCE_KEYS
from isoformer.data.dataset import TranscriptDataset, read_transcripts
from isoformer.data.expression_model import (
    PROTEIN_FEATURES,
    ExpressionRules,
    Motif,
    count_occurrences,
)
from isoformer.data.genome import reverse_complement
from isoformer.model.prediction import Predictor
from isoformer.training.run import Run

RNA_SPAN = 300  # nt of the 3'UTR
PROTEIN_SPAN = 150  # residues from the N-terminus
BATCH_SIZE = 64


# ---- the truth, by the ISM convention ----

def motif_mask(sequence: str, motifs: Sequence[Motif], start: int, end: int) -> np.ndarray:
    """[len(sequence)] bool: the bases of every occurrence of `motifs` lying in [start, end)
    (a motif with `both_strands` also as its reverse complement)."""
    mask = np.zeros(len(sequence), dtype=bool)
    for motif in motifs:
        patterns = {motif.sequence} | ({reverse_complement(motif.sequence)}
                                       if motif.both_strands else set())
        for pattern in patterns:
            at = sequence.find(pattern, start)
            while 0 <= at <= end - len(pattern):
                mask[at : at + len(pattern)] = True
                at = sequence.find(pattern, at + 1)
    return mask


def residue_contributions(rules: ExpressionRules) -> dict[str, float]:
    """Each residue's effect on the protein term per unit of share, weights averaged over tissues:
    sum over features of mean weight x (+1 counted, -1 counted against) / the feature's scale."""
    contributions = {}
    for residue in MUTATION_ALPHABETS["protein"]:
        contributions[residue] = sum(
            float(np.mean(f.weights)) * ((residue in PROTEIN_FEATURES[f.name][0])
                                         - (residue in PROTEIN_FEATURES[f.name][1])) / f.scale
            for f in rules.protein_features)
    return contributions


def truth_ism_scores(modality: str, sequence: str, span: tuple[int, int],
                     rules: ExpressionRules) -> np.ndarray:
    """The rules' ISM score [L] (NaN outside the span): minus the mean over the alternative
    letters of the change of the modality's term (in log TPM, tissue-mean weights)."""
    alphabet = MUTATION_ALPHABETS[modality]
    scores = np.full(len(sequence), np.nan)
    if modality == "protein":
        value = residue_contributions(rules)
        for position in range(*span):
            here = sequence[position]
            deltas = [value[b] - value.get(here, 0.0) for b in alphabet if b != here]
            scores[position] = -np.mean(deltas) / len(sequence)
        return scores
    motifs = rules.promoter_motifs if modality == "dna" else rules.rna_motifs
    center = len(sequence) // 2
    region = ((center + rules.promoter_region[0], center + rules.promoter_region[1])
              if modality == "dna" else (0, len(sequence)))
    reach = max(len(m.sequence) for m in motifs) - 1

    def term(text: str) -> float:
        return sum(float(np.mean(m.weights)) * count_occurrences(text, m) for m in motifs)

    for position in range(*span):
        if not region[0] <= position < region[1]:
            scores[position] = 0.0  # the rule reads no base outside its region
            continue
        # Only occurrences overlapping the position change: recount a window around it.
        low, high = max(region[0], position - reach), min(region[1], position + reach + 1)
        local, at = sequence[low:high], position - low
        before = term(local)
        deltas = [term(local[:at] + b + local[at + 1 :]) - before
                  for b in alphabet if b != sequence[position]]
        scores[position] = -np.mean(deltas)
    return scores


def compare(scores: np.ndarray, truth: np.ndarray, signal: np.ndarray,
            span: tuple[int, int]) -> dict[str, float | None]:
    """ratio (mean |score| on the signal / elsewhere in the span) and r (Pearson with the
    truth over the span; None where either is constant)."""
    window = slice(*span)
    values, expected, marked = np.abs(scores[window]), truth[window], signal[window]
    ratio = (float(values[marked].mean() / values[~marked].mean())
             if marked.any() and (~marked).any() and values[~marked].mean() > 0 else None)
    r = (float(np.corrcoef(scores[window], expected)[0, 1])
         if np.std(scores[window]) > 0 and np.std(expected) > 0 else None)
    return {"ratio": ratio, "r": r, "n_signal": int(marked.sum()), "n_positions": len(values)}


# ---- choosing the transcripts ----

def cases(modality: str, records: Iterator[tuple[dict[str, Any], dict[str, Any]]],
          rules: ExpressionRules, n: int
          ) -> Iterator[tuple[dict[str, Any], tuple[int, int], np.ndarray, RnaRegions | None]]:
    """(record, span, signal mask, RNA regions) of the first `n` transcripts whose span holds
    the modality's signal, each sequence once (isoforms share promoters and proteins)."""
    found, seen = 0, set()
    counted = {residue for f in rules.protein_features if np.any(f.weights)
               for residue in "".join(PROTEIN_FEATURES[f.name])}
    for record, row in records:
        sequence = record[SEQUENCE_KEYS[modality]]
        regions = RnaRegions(row["utr5_length"], row["cds_length"], row["utr3_length"])
        if modality == "dna":
            center = len(sequence) // 2
            span = (center + rules.promoter_region[0], center + rules.promoter_region[1])
            signal = motif_mask(sequence, rules.promoter_motifs, *span)
        elif modality == "rna":
            utr3 = regions.utr5 + regions.cds
            signal = motif_mask(sequence, rules.rna_motifs, utr3, len(sequence))
            if not signal.any():
                continue
            start = max(utr3, int(np.argmax(signal)) - RNA_SPAN // 2)
            span = (start, min(len(sequence), start + RNA_SPAN))
            signal = motif_mask(sequence, rules.rna_motifs, *span)
        else:
            if not sequence:
                continue
            span = (0, min(len(sequence), PROTEIN_SPAN))
            signal = np.array([residue in counted for residue in sequence])
        if signal[span[0] : span[1]].any() and sequence[span[0] : span[1]] not in seen:
            seen.add(sequence[span[0] : span[1]])
            yield record, span, signal, regions if modality == "rna" else None
            found += 1
            if found == n:
                return


def test_records(data: Path, dna_length: int) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(model record, transcripts-table row) of every test transcript, in the dataset's order."""
    table = read_transcripts(data, "test")
    dataset = TranscriptDataset(data, split="test", dna_length=dna_length)
    try:
        for index, row in enumerate(table.iter_rows(named=True)):
            item = dataset[index]
            yield {key: item[key] for key in (DNA_SEQUENCE, RNA_SEQUENCE, PROTEIN_SEQUENCE)}, row
    finally:
        dataset.close()


# ---- the measurement ----

def measure(run_dir: Path, data: Path, rules: ExpressionRules, n: int, out: Path
            ) -> dict[str, Any]:
    run = Run.open(run_dir)
    model = run.load_model("cpu")
    predictor, target = Predictor(model), Target.resolve(run.tissues, None)
    results: dict[str, Any] = {}
    for modality in run.modalities:
        start, rows = time.perf_counter(), []
        chosen = cases(modality, test_records(data, run.dna_length), rules, n)
        for number, (record, span, signal, regions) in enumerate(chosen):
            sequence = record[SEQUENCE_KEYS[modality]]
            with evaluating(model):
                delta, _ = ism_scores(predictor, record, modality, target, span, BATCH_SIZE)
            scores = ism_position_scores(delta, sequence, MUTATION_ALPHABETS[modality])
            truth = truth_ism_scores(modality, sequence, span, rules)
            rows.append(compare(scores, truth, signal, span))
            if number == 0:
                plot_attribution(
                    scores, out / f"{run_dir.name}_{modality}.png",
                    f"{run_dir.name}: {modality} ISM, mean log(1+TPM); the rules' signal "
                    "marked",
                    span, "ISM score", regions=regions,
                    tss=len(sequence) // 2 if modality == "dna" else None,
                    elements=_intervals(signal, span))
        results[modality] = {"transcripts": rows, **_summarise(rows),
                             "seconds": round(time.perf_counter() - start, 1)}
    return results


def _intervals(mask: np.ndarray, span: tuple[int, int]) -> list[tuple[int, int]]:
    """The runs of True in mask[span] as (start, end) positions."""
    inside = np.concatenate([[False], mask[span[0] : span[1]], [False]]).astype(int)
    edges = np.flatnonzero(np.diff(inside)) + span[0]
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"n": len(rows)}
    for name, chance in (("ratio", 1.0), ("r", 0.0)):
        values = np.array([row[name] for row in rows if row[name] is not None])
        summary[name] = {
            "mean": float(values.mean()) if len(values) else None,
            "median": float(np.median(values)) if len(values) else None,
            f"share_above_{chance:g}": float((values > chance).mean()) if len(values) else None,
        }
    return summary


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
    rules = ExpressionRules.from_json(json.loads(args.truth.read_text())["rules"])
    start = time.perf_counter()
    report = {
        "machine": f"{platform.machine()}, {args.threads} torch thread(s)",
        "n": args.n, "rna_span": RNA_SPAN, "protein_span": PROTEIN_SPAN,
        "runs": {run.name: measure(run, args.data, rules, args.n, args.out) for run in args.run},
    }
    report["seconds"] = round(time.perf_counter() - start, 1)
    (args.out / "attribution_truth.json").write_text(json.dumps(report, indent=2) + "\n")
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
