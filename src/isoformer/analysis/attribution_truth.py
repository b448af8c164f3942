"""Does attribution find what a simulated study planted? ISM of a run against the rules' own.

    report = measure_run(Run.open("demo/runs/protein"), "demo/dataset", rules, truth, 10, out)

For the first N test transcripts of the dataset that carry a modality's signal in its span
(`cases`), ISM (`isoformer.analysis.attribution.ism_scores`, target: the mean over tissues) with
the run's model, beside the ISM of the simulation's truth by the same convention
(`truth_ism`): every mutant's noise-free log(1 + TPM) under the study's rules
(`variant_truth.true_expression`, with the transcript's gene effect), mean over tissues, minus
the reference's.

- dna: span = the rules' promoter region (bp from the TSS, e.g. -380..-40, of the run's window);
  signal = the bases of promoter-motif occurrences there (either strand)
- rna: span = up to RNA_SPAN nt of the 3'UTR around its first RNA-motif occurrence (ATTTA, ...);
  signal = the bases of RNA-motif occurrences in it
- protein: span = the first PROTEIN_SPAN residues; signal = the residues a protein feature of the
  rules counts (e.g. K R D E for charge, C for cysteine)

Per transcript (`compare`): `ratio` = mean |score| on the signal / mean |score| elsewhere in the
span (about 1 for a model blind to the signal), `r` = Pearson correlation of the model's scores
with the truth's over the span (about 0 for a blind model). `benchmarks/attribution_truth.py`
runs this over several runs and prints the table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isoformer.analysis.attribution import (
    MUTATION_ALPHABETS,
    Target,
    delta_matrix,
    ism_position_scores,
    ism_scores,
    mutant_records,
)
from isoformer.analysis.attribution_plot import RnaRegions, plot_attribution
from isoformer.analysis.variant_truth import true_expression
from isoformer.constants import (
    DNA_SEQUENCE,
    PROTEIN_SEQUENCE,
    RNA_SEQUENCE,
    SEQUENCE_KEYS,
    TRANSCRIPT_ID,
)
from isoformer.data.dataset import TranscriptDataset, read_transcripts
from isoformer.data.expression_model import PROTEIN_FEATURES, ExpressionRules, Motif
from isoformer.data.genome import reverse_complement
from isoformer.model.prediction import Predictor
from isoformer.training.run import Run

RNA_SPAN = 300  # nt of the 3'UTR
PROTEIN_SPAN = 150  # residues from the N-terminus
BATCH_SIZE = 64
Record = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One test transcript to attribute: its model record, span, signal and gene effect."""

    record: Record  # dna_sequence (the run's window), rna_sequence, protein_sequence
    transcript_id: str
    span: tuple[int, int]
    signal: np.ndarray  # [L] bool: the positions the rules read as the modality's signal
    regions: RnaRegions | None  # RNA regions to shade (rna only)


# ---- the truth, by the ISM convention ----

def truth_ism(modality: str, record: Record, span: tuple[int, int], rules: ExpressionRules,
              gene_effect: np.ndarray) -> np.ndarray:
    """delta [L, A] of the rules as `ism_scores` gives the model's: every mutant's noise-free
    log(1 + TPM), mean over tissues, minus the reference's (gene_effect [tissues])."""
    key, alphabet = SEQUENCE_KEYS[modality], MUTATION_ALPHABETS[modality]
    sequence = record[key]

    def expression(inputs: Record) -> float:
        return float(np.mean(true_expression(inputs[DNA_SEQUENCE], inputs[RNA_SEQUENCE],
                                             inputs[PROTEIN_SEQUENCE], gene_effect, rules)))

    reference = expression(record)
    delta = delta_matrix(sequence, alphabet, span)
    # The protein rules read composition alone, so a substitution's effect depends on the
    # (reference, alternative) residues only, not on where: each pair is evaluated once.
    by_residues: dict[tuple[str, str], float] = {}
    for position, letter, mutant in mutant_records(record, key, alphabet, span):
        if modality != "protein":
            delta[position, letter] = expression(mutant) - reference
            continue
        residues = (sequence[position], alphabet[letter])
        if residues not in by_residues:
            by_residues[residues] = expression(mutant) - reference
        delta[position, letter] = by_residues[residues]
    return delta


def truth_ism_scores(modality: str, record: Record, span: tuple[int, int],
                     rules: ExpressionRules, gene_effect: np.ndarray) -> np.ndarray:
    """The rules' ISM score [L] (NaN outside the span), `ism_position_scores` of `truth_ism`."""
    delta = truth_ism(modality, record, span, rules, gene_effect)
    return ism_position_scores(delta, record[SEQUENCE_KEYS[modality]], MUTATION_ALPHABETS[modality])


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


# ---- the signal and the transcripts ----

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


def counted_residues(rules: ExpressionRules) -> set[str]:
    """The residues a protein feature with a non-zero weight counts (for or against)."""
    return {residue for f in rules.protein_features if np.any(f.weights)
            for residue in "".join(PROTEIN_FEATURES[f.name])}


def held_out_records(data: str | Path,
                     dna_length: int) -> Iterator[tuple[Record, dict[str, Any]]]:
    """(model record, transcripts-table row) of every test transcript, in the dataset's order."""
    table = read_transcripts(data, "test")
    dataset = TranscriptDataset(data, split="test", dna_length=dna_length)
    try:
        for index, row in enumerate(table.iter_rows(named=True)):
            item = dataset[index]
            yield {key: item[key] for key in (DNA_SEQUENCE, RNA_SEQUENCE, PROTEIN_SEQUENCE)}, row
    finally:
        dataset.close()


def cases(modality: str, records: Iterator[tuple[Record, dict[str, Any]]],
          rules: ExpressionRules, n: int, protein_span: int = PROTEIN_SPAN) -> Iterator[Case]:
    """The first `n` transcripts whose span holds the modality's signal, each span's sequence
    once (isoforms share promoters and proteins)."""
    found, seen, counted = 0, set(), counted_residues(rules)
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
            span = (0, min(len(sequence), protein_span))
            signal = np.array([residue in counted for residue in sequence])
        if signal[span[0] : span[1]].any() and sequence[span[0] : span[1]] not in seen:
            seen.add(sequence[span[0] : span[1]])
            yield Case(record, row[TRANSCRIPT_ID], span, signal,
                       regions if modality == "rna" else None)
            found += 1
            if found == n:
                return


# ---- the measurement ----

def attribute_case(predictor: Predictor, case: Case, modality: str, rules: ExpressionRules,
                   truth: dict[str, Any]) -> tuple[np.ndarray, dict[str, float | None]]:
    """The model's ISM scores [L] of the case (mean over tissues) and `compare` with the truth's;
    `truth`: the study's truth.json."""
    sequence, alphabet = case.record[SEQUENCE_KEYS[modality]], MUTATION_ALPHABETS[modality]
    target = Target.resolve(predictor.models[0].tissues, None)
    delta, _ = ism_scores(predictor, case.record, modality, target, case.span, BATCH_SIZE)
    scores = ism_position_scores(delta, sequence, alphabet)
    gene_effect = np.asarray(truth["transcripts"][case.transcript_id]["components"]["gene"])
    expected = truth_ism_scores(modality, case.record, case.span, rules, gene_effect)
    return scores, compare(scores, expected, case.signal, case.span)


def measure_run(run: Run, data: str | Path, rules: ExpressionRules, truth: dict[str, Any],
                n: int, out: Path) -> dict[str, Any]:
    """Per modality the run reads: `compare` of each of `n` cases, their summary and seconds;
    the first case's track drawn to OUT/<run>_<modality>.png with the signal marked."""
    name = run.directory.name
    predictor = Predictor(run.load_model("cpu"))
    results: dict[str, Any] = {}
    for modality in run.modalities:
        start, rows = time.perf_counter(), []
        chosen = cases(modality, held_out_records(data, run.dna_length), rules, n)
        for number, case in enumerate(chosen):
            scores, found = attribute_case(predictor, case, modality, rules, truth)
            rows.append(found)
            if number == 0:
                plot_attribution(
                    scores, out / f"{name}_{modality}.png",
                    f"{name}: {modality} ISM, mean log(1+TPM); the rules' signal marked",
                    case.span, "ISM score", regions=case.regions,
                    tss=len(scores) // 2 if modality == "dna" else None,
                    elements=_intervals(case.signal, case.span))
        results[modality] = {"transcripts": rows, **summarise(rows),
                             "seconds": round(time.perf_counter() - start, 1)}
    return results


def _intervals(mask: np.ndarray, span: tuple[int, int]) -> list[tuple[int, int]]:
    """The runs of True in mask[span] as (start, end) positions."""
    inside = np.concatenate([[False], mask[span[0] : span[1]], [False]]).astype(int)
    edges = np.flatnonzero(np.diff(inside)) + span[0]
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """n, and mean, median and share above chance (ratio 1, r 0) of the defined values."""
    summary: dict[str, Any] = {"n": len(rows)}
    for name, chance in (("ratio", 1.0), ("r", 0.0)):
        values = np.array([row[name] for row in rows if row[name] is not None])
        summary[name] = {
            "mean": float(values.mean()) if len(values) else None,
            "median": float(np.median(values)) if len(values) else None,
            f"share_above_{chance:g}": float((values > chance).mean()) if len(values) else None,
        }
    return summary
