"""Per-position attribution of predicted expression: in-silico mutagenesis and gradient x input.

    predictor = Predictor(Run.open("runs/demo").load_model())
    delta, reference = ism_scores(predictor, record, "rna", Target.resolve(tissues, None),
                                  span=(0, len(record["rna_sequence"])), batch_size=16)

Files in, files out (`isoformer attribute`): `isoformer.analysis.attribution_files`. The target
is the run's prediction in log(1 + TPM) of one tissue, or its mean over the tissues (`Target`).
For one record (a dict as `predict` takes it) and one modality:

- `ism` (in-silico mutagenesis, `ism_scores`): every position of the span takes every other
  letter of the modality's alphabet (`MUTATION_ALPHABETS`: A, C, G, T; the 20 standard
  residues) and the mutants go through the project's `Predictor`, generated batch by batch as
  they are predicted (memory holds one batch). `delta[i, a] = target(letter a at i) -
  target(reference)` [L, A], 0 at the reference letter. The per-position score is minus the mean
  of `delta` over the alternatives: positive where the reference letter raises the target
  (mutating it away lowers it). A reference letter outside the alphabet (N, X) has every letter
  as an alternative. For an IsoFormer, the other modalities' encoder states are computed once per
  record and shared by its mutants (the embedding-cache path), so each mutant runs only the
  mutated modality's encoder, and the fusion and head.
- `saliency` (gradient x input, `saliency_scores`): the gradient of the target with respect to
  the encoder's input representation (`SequenceEncoder.input_representations`: the one-hot window
  of Enformer / Borzoi, the token embeddings of NT-v2 and ESM-2), times that representation,
  summed over its channels: one score per token, mapped back to positions with `token_spans`
  (a 6-mer's score split evenly over its 6 bases; `<cls>` / `<eos>` dropped). Eval mode, the
  model's float32 weights, no autocast.

Positions the model never reads (outside the run's DNA window, cut by an encoder's crop) score 0
by both methods; positions outside the span are NaN. The span (`--span A:B`) is 0-based half-open
in the modality's sequence as the record gives it; by default the whole sequence, for DNA the
run's TSS-centred window of `dna_length` bp (what `predict` reads of a longer window).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from isoformer.constants import EMBEDDINGS, SEQUENCE_KEYS
from isoformer.encoders.base import crop_sequence
from isoformer.encoders.mlm import STANDARD_RESIDUES
from isoformer.errors import IsoformerError
from isoformer.model.isoformer import IsoFormer
from isoformer.model.kmer_baseline import KmerBaseline
from isoformer.model.prediction import Predictor, evaluating, predict_batch

AttributionMethod = Literal["ism", "saliency"]
METHODS: tuple[str, ...] = ("ism", "saliency")
MUTATION_ALPHABETS: dict[str, str] = {
    "dna": "ACGT",
    "rna": "ACGT",  # the encoders read U as T
    "protein": "".join(sorted(STANDARD_RESIDUES)),
}
SCORE_RULES = {
    "ism": "delta[i, a] = target(letter a at position i) - target(reference), 0 at the reference "
           "letter; score[i] = -(mean of delta[i] over the alternative letters): positive where "
           "the reference letter raises the target",
    "saliency": "gradient x input: d target / d input representation (one-hot window or token "
                "embeddings) times the representation, summed over channels, per token; a "
                "token's score split evenly over the positions it covers, special tokens dropped",
}
Record = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """What is attributed: one tissue's predicted log(1 + TPM), or the mean over `tissues`."""

    tissues: tuple[str, ...]
    tissue: str | None = None

    @classmethod
    def resolve(cls, tissues: Sequence[str], tissue: str | None) -> Target:
        if tissue is not None and tissue not in tissues:
            raise IsoformerError(f"--tissue {tissue!r} is not one of the run's tissues: "
                                 f"{', '.join(tissues)}")
        return cls(tuple(tissues), tissue)

    @property
    def label(self) -> str:
        if self.tissue is None:
            return f"mean log(1+TPM) over {len(self.tissues)} tissues"
        return f"{self.tissue} log(1+TPM)"

    def select(self, predictions: Any) -> Any:
        """Predictions [N, T] (numpy or torch) -> the target [N]."""
        if self.tissue is None:
            return predictions.mean(-1)
        return predictions[:, self.tissues.index(self.tissue)]


def parse_span(text: str) -> tuple[int, int]:
    """`A:B` -> (A, B), 0-based half-open with 0 <= A < B."""
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if match is None or int(match[1]) >= int(match[2]):
        raise IsoformerError(f"--span {text!r}: expected A:B, 0-based half-open positions with "
                             "0 <= A < B (e.g. 0:100)")
    return int(match[1]), int(match[2])


def default_span(modality: str, length: int, dna_length: int) -> tuple[int, int]:
    """The whole sequence; for DNA the run's TSS-centred window (the model crops the rest)."""
    if modality != "dna":
        return 0, length
    kept = crop_sequence(list(range(length)), dna_length, "center")
    return kept[0], kept[-1] + 1


# ---- in-silico mutagenesis ----

def ism_scores(predictor: Predictor, record: Record, modality: str, target: Target,
               span: tuple[int, int], batch_size: int,
               advance: Callable[[int], None] | None = None) -> tuple[np.ndarray, float]:
    """delta [L, A] over the span (NaN elsewhere) and the reference target; see the module."""
    key, alphabet = SEQUENCE_KEYS[modality], MUTATION_ALPHABETS[modality]
    record = _sharing_other_states(predictor.models[0], record, modality)
    sequence = record[key]
    reference = float(target.select(predictor.predict([record], 1))[0])
    delta = delta_matrix(sequence, alphabet, span)
    mutants = mutant_records(record, key, alphabet, span)
    while chunk := list(itertools.islice(mutants, batch_size)):
        values = target.select(predictor.predict([mutant for _, _, mutant in chunk], batch_size))
        for (position, letter, _), value in zip(chunk, values):
            delta[position, letter] = value - reference
        if advance is not None:
            advance(len(chunk))
    return delta, reference


def delta_matrix(sequence: str, alphabet: str, span: tuple[int, int]) -> np.ndarray:
    """[L, A] float32 to fill with deltas: NaN, 0 at the reference letters of the span."""
    delta = np.full((len(sequence), len(alphabet)), np.nan, dtype=np.float32)
    for position in range(*span):
        if (letter := alphabet.find(sequence[position])) >= 0:  # -1: N, X, ...
            delta[position, letter] = 0.0
    return delta


def mutant_records(record: Record, key: str, alphabet: str,
                   span: tuple[int, int]) -> Iterator[tuple[int, int, Record]]:
    """(position, letter index, mutant record) for every alternative letter in the span, made
    as they are asked for."""
    sequence = record[key]
    for position in range(*span):
        for letter, base in enumerate(alphabet):
            if base != sequence[position]:
                mutated = sequence[:position] + base + sequence[position + 1 :]
                yield position, letter, {**record, key: mutated}


def mutant_count(sequence: str, alphabet: str, span: tuple[int, int]) -> int:
    return sum(len(alphabet) - (base in alphabet) for base in sequence[span[0] : span[1]])


def ism_position_scores(delta: np.ndarray, sequence: str, alphabet: str) -> np.ndarray:
    """delta [L, A] -> per-position score [L]: minus the mean over the alternative letters."""
    letters = np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8)
    bases = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
    alternative = bases[:, None] != letters[None, :]  # [L, A]
    total = np.where(alternative, delta, 0.0).sum(axis=1)  # NaN rows (outside the span) stay NaN
    return (-total / alternative.sum(axis=1)).astype(np.float32)


def _sharing_other_states(model: IsoFormer | KmerBaseline, record: Record,
                          modality: str) -> Record:
    """`record` carrying the encoder states of its other modalities (`EMBEDDINGS`, [L, D] as an
    embedding cache holds them), which all its mutants share; a baseline's record as it is."""
    if isinstance(model, KmerBaseline):
        return record
    states = {}
    with torch.inference_mode(), evaluating(model):
        for other in model.encoders:
            sequence = record.get(SEQUENCE_KEYS[other]) or ""
            if other != modality and sequence:
                output = model.encode_sequences(other, [sequence])
                states[other] = output.hidden[0][output.mask[0]].float().cpu().numpy()
    return {**record, EMBEDDINGS: states}


# ---- gradient x input ----

def saliency_scores(model: IsoFormer, records: Sequence[Record], modality: str,
                    target: Target) -> tuple[list[np.ndarray], np.ndarray]:
    """Gradient x input per position [L_i] of each record's `modality` sequence (one batch), and
    the records' targets [B]; in eval mode."""
    encoder = model.encoders[modality]
    sequences = [record[SEQUENCE_KEYS[modality]] for record in records]
    offsets = [0] * len(sequences)
    if modality == "dna" and model.config.dna_length is not None:
        # The model crops each window to dna_length around its centre before the encoder.
        offsets = [default_span("dna", len(s), model.config.dna_length)[0] for s in sequences]
        sequences = [s[o : o + model.config.dna_length] for s, o in zip(sequences, offsets)]
    with torch.enable_grad(), evaluating(model), encoder.input_representations() as captured:
        targets = target.select(model.to_log1p(predict_batch(model, records)))  # [B]
        (representation,) = captured  # [B, L_tokens, C]
        (gradient,) = torch.autograd.grad(targets.sum(), representation, allow_unused=True)
    if gradient is None:  # the prediction does not depend on this modality at all
        gradient = torch.zeros_like(representation)
    per_token = (gradient * representation.detach()).sum(-1).double().cpu().numpy()  # [B, L_t]
    scores = [
        _per_position(tokens, spans + offset, len(record[SEQUENCE_KEYS[modality]]))
        for tokens, spans, offset, record in zip(per_token, encoder.token_spans(sequences),
                                                 offsets, records)
    ]
    return scores, targets.detach().double().cpu().numpy()


def _per_position(token_scores: np.ndarray, spans: np.ndarray, length: int) -> np.ndarray:
    """Token scores [L_t] -> position scores [length]: each token's score split evenly over the
    positions of its span (spans [L_t, 2]); empty spans (special tokens) dropped."""
    widths = spans[:, 1] - spans[:, 0]
    real = widths > 0
    positions = np.concatenate([np.arange(s, e) for s, e in spans[real]] or [np.zeros(0, int)])
    values = np.repeat(token_scores[: len(spans)][real] / widths[real], widths[real])
    scores = np.zeros(length, dtype=np.float64)
    np.add.at(scores, positions, values)
    return scores.astype(np.float32)
