"""In-silico mutagenesis: the other modalities' encoder states shared by a record's mutants,
against the naive path that encodes every modality of every mutant.

    python benchmarks/attribution.py [--modality rna] [--positions 100] [--repeats 3]

The tiny preset with random weights (as `benchmarks/predict.py` builds it), one synthetic
transcript-length record (DNA at the preset's window, 1,500-nt RNA, 300-residue protein), every
alternative letter at `--positions` positions of the modality: `ism_scores` (what `isoformer
attribute` runs) and the same mutants predicted whole through the same `Predictor`. Prints the
time per mutant of each, their ratio and the largest difference of the deltas (the two must
agree). Torch runs on one thread so the figure does not depend on other jobs' cores.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from predict import make_run, synthetic_records

from isoformer.analysis.attribution import (
    MUTATION_ALPHABETS,
    Target,
    delta_matrix,
    ism_scores,
    mutant_records,
)
from isoformer.constants import SEQUENCE_KEYS
from isoformer.model.prediction import Predictor

BATCH_SIZE = 16


def naive_ism(predictor: Predictor, record: dict, modality: str, target: Target,
              span: tuple[int, int]) -> np.ndarray:
    """Every mutant encoded whole: the path `ism_scores` improves on."""
    key, alphabet = SEQUENCE_KEYS[modality], MUTATION_ALPHABETS[modality]
    reference = float(target.select(predictor.predict([record], 1))[0])
    delta = delta_matrix(record[key], alphabet, span)
    mutants = mutant_records(record, key, alphabet, span)
    while chunk := list(itertools.islice(mutants, BATCH_SIZE)):
        values = target.select(predictor.predict([m for _, _, m in chunk], BATCH_SIZE))
        for (position, letter, _), value in zip(chunk, values, strict=True):
            delta[position, letter] = value - reference
    return delta


def best_of(repeats: int, step) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = step()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", default="rna", choices=("dna", "rna", "protein"))
    parser.add_argument("--positions", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp) / "run")
        model = run.load_model("cpu")
    record = synthetic_records(2, run.dna_length, (1500, 1500), (300, 300))[1]
    predictor = Predictor(model)
    target = Target.resolve(run.tissues, None)
    length = len(record[SEQUENCE_KEYS[args.modality]])
    start = (length - args.positions) // 2
    span = (start, start + args.positions)
    mutants = args.positions * (len(MUTATION_ALPHABETS[args.modality]) - 1)

    shared_s, shared = best_of(args.repeats, lambda: ism_scores(
        predictor, record, args.modality, target, span, BATCH_SIZE)[0])
    naive_s, naive = best_of(args.repeats, lambda: naive_ism(
        predictor, record, args.modality, target, span))
    difference = float(np.nanmax(np.abs(shared - naive)))
    print(f"{args.modality} ISM, {mutants} mutants ({args.positions} positions), tiny preset, "
          f"one thread, best of {args.repeats}:")
    print(f"  naive (every modality encoded per mutant): {1e3 * naive_s / mutants:.2f} ms/mutant")
    print(f"  shared states (ism_scores):                {1e3 * shared_s / mutants:.2f} ms/mutant")
    print(f"  ratio: {naive_s / shared_s:.2f}x; largest delta difference {difference:.1e}")


if __name__ == "__main__":
    main()
