"""The k-mer baseline: per-tissue ridge regression on sequence composition, the peer a user tries
first.

Features of one transcript (each modality's only when the baseline uses it):
- dna: counts of every `dna_k`-mer in the TSS-centred window, a k-mer and its reverse complement
  counted together (binding sites act in either orientation); windows containing N skip them;
- rna: counts of every `rna_k`-mer of the spliced RNA (its own orientation) and log2 of its length;
- protein: the share of each of the 20 standard residues, log2 of the length, and a non-coding flag.

Features are standardised on the training split; each tissue's ridge penalty is the one of
`alphas` with the lowest validation MSE (the test split is never seen), and the weights are fit on
the training split. Ridge for every penalty at once through one SVD (numpy: nothing iterative).

    baseline = KmerBaseline.fit(config, train_records, train_targets, val_records, val_targets)
    baseline.save_pretrained("run/model")
    KmerBaseline.from_pretrained("run/model").predict(records)   # log(1 + TPM) [N, T]
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from safetensors.numpy import load_file, save_file

from isoformer.constants import DNA_SEQUENCE, MODALITIES, PROTEIN_SEQUENCE, RNA_SEQUENCE, TISSUES
from isoformer.encoders.base import crop_sequence
from isoformer.errors import IsoformerError
from isoformer.files import atomic_output, write_json_atomic
from isoformer.typed_config import from_plain, to_plain

Record = dict[str, Any]
WEIGHTS_FILE = "kmer_baseline.safetensors"
CONFIG_FILE = "config.json"
_CODES = np.full(256, -1, dtype=np.int64)
for _i, _base in enumerate(b"ACGT"):
    _CODES[_base] = _i
_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


@dataclass
class KmerBaselineConfig:
    kind: Literal["kmer"] = "kmer"
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    tissues: list[str] = field(default_factory=lambda: list(TISSUES))
    dna_length: int = 1024  # bp around the TSS (the tiny preset's window)
    dna_k: int = 6
    rna_k: int = 6
    # Ridge penalties tried per tissue (on standardised features), chosen on validation.
    alphas: list[float] = field(default_factory=lambda: [float(10**e) for e in range(-1, 7)])

    def __post_init__(self) -> None:
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise IsoformerError(f"baseline: modalities {self.modalities} must be a non-empty "
                                 f"subset of {', '.join(MODALITIES)}")
        self.modalities = [m for m in MODALITIES if m in self.modalities]
        if not 1 <= self.dna_k <= 8 or not 1 <= self.rna_k <= 8:
            raise IsoformerError("baseline: dna_k and rna_k must lie in 1..8")
        if self.dna_length < 1 or not self.alphas or min(self.alphas) <= 0:
            raise IsoformerError("baseline: dna_length and every alpha must be positive")


def kmer_counts(sequence: str, k: int) -> np.ndarray:
    """Counts [4^k] of each k-mer (index: bases as base-4 digits, A=0 .. T=3, first base most
    significant); k-mers holding anything but ACGT are skipped."""
    codes = _CODES[np.frombuffer(sequence.upper().encode("ascii"), dtype=np.uint8)]
    if len(codes) < k:
        return np.zeros(4**k)
    windows = np.lib.stride_tricks.sliding_window_view(codes, k)  # [L - k + 1, k]
    windows = windows[(windows >= 0).all(axis=1)]
    index = windows @ (4 ** np.arange(k - 1, -1, -1))
    return np.bincount(index, minlength=4**k).astype(np.float64)


def canonical_columns(k: int) -> np.ndarray:
    """For each k-mer index, the column of {k-mer, reverse complement} (numbered from 0)."""
    kmers = np.array(list(itertools.product(range(4), repeat=k)))  # [4^k, k]
    weights = 4 ** np.arange(k - 1, -1, -1)
    index, reverse = kmers @ weights, (3 - kmers[:, ::-1]) @ weights
    _, columns = np.unique(np.minimum(index, reverse), return_inverse=True)
    return columns


def _protein_features(protein: str) -> np.ndarray:
    if not protein:
        return np.array([0.0] * len(_RESIDUES) + [0.0, 1.0])
    shares = [protein.count(r) / len(protein) for r in _RESIDUES]
    return np.array([*shares, np.log2(len(protein)), 0.0])


class KmerBaseline:
    """Per-tissue ridge on k-mer features: `predict` maps records to log(1 + TPM) [N, T]."""

    device = "cpu"  # numpy, whatever device a command asks for

    def __init__(self, config: KmerBaselineConfig, state: dict[str, np.ndarray]):
        self.config = config
        self.state = state  # mean, std [F]; weights [F, T]; bias, alpha [T]
        self._dna_columns = canonical_columns(config.dna_k)

    @property
    def tissues(self) -> list[str]:
        return list(self.config.tissues)

    def features(self, records: Sequence[Record]) -> np.ndarray:
        """[N, F] raw (unstandardised) features of the records."""
        config, n_dna = self.config, int(self._dna_columns.max()) + 1
        rows = []
        for record in records:
            parts = []
            if "dna" in config.modalities:
                window = crop_sequence(record[DNA_SEQUENCE], config.dna_length, "center")
                if len(window) < config.dna_length:
                    raise IsoformerError(
                        f"{record.get('transcript_id', 'a record')}: DNA window of {len(window)} "
                        f"bp, shorter than the baseline's {config.dna_length}"
                    )
                parts.append(np.bincount(self._dna_columns, kmer_counts(window, config.dna_k),
                                         minlength=n_dna))
            if "rna" in config.modalities:
                rna = record[RNA_SEQUENCE]
                parts.append(np.append(kmer_counts(rna, config.rna_k), np.log2(max(len(rna), 1))))
            if "protein" in config.modalities:
                parts.append(_protein_features((record.get(PROTEIN_SEQUENCE) or "").upper()))
            rows.append(np.concatenate(parts))
        return np.stack(rows)

    def _standardise(self, features: np.ndarray) -> np.ndarray:
        return (features - self.state["mean"]) / self.state["std"]

    def predict(self, records: Sequence[Record]) -> np.ndarray:
        """log(1 + TPM) predictions [N, T] (float32), in the order of `records`."""
        if len(records) == 0:
            return np.zeros((0, len(self.tissues)), dtype=np.float32)
        x = self._standardise(self.features(records))
        return (x @ self.state["weights"] + self.state["bias"]).astype(np.float32)

    @classmethod
    def fit(cls, config: KmerBaselineConfig, train: Sequence[Record], train_targets: np.ndarray,
            valid: Sequence[Record], valid_targets: np.ndarray) -> KmerBaseline:
        """Fit on `train`, choosing each tissue's penalty on `valid`; targets [N, T], NaN = no
        value (left out of that tissue's fit and choice)."""
        baseline = cls(config, {})
        x_train = baseline.features(train)
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        baseline.state = {"mean": mean, "std": np.where(std > 0, std, 1.0)}
        x_train, x_valid = baseline._standardise(x_train), baseline._standardise(
            baseline.features(valid))
        shared_svd = np.linalg.svd(x_train, full_matrices=False)
        n_tissues = train_targets.shape[1]
        weights = np.zeros((x_train.shape[1], n_tissues))
        bias, alphas, errors = np.zeros(n_tissues), np.full(n_tissues, np.nan), np.zeros(n_tissues)
        for t in range(n_tissues):
            seen = np.isfinite(train_targets[:, t])
            if not seen.any():
                continue  # a tissue without any value predicts 0, as its statistics say
            u, s, vt = shared_svd if seen.all() else np.linalg.svd(x_train[seen],
                                                                 full_matrices=False)
            bias[t] = train_targets[seen, t].mean()
            projected = u.T @ (train_targets[seen, t] - bias[t])  # [rank]
            known = np.isfinite(valid_targets[:, t])
            best = (np.inf, np.nan, np.zeros(x_train.shape[1]))
            for alpha in config.alphas:
                w = vt.T @ (s / (s**2 + alpha) * projected)
                mse = float(np.mean((x_valid[known] @ w + bias[t] - valid_targets[known, t]) ** 2))
                if mse < best[0]:
                    best = (mse, alpha, w)
            errors[t], alphas[t], weights[:, t] = best
        baseline.state.update(weights=weights, bias=bias, alpha=alphas, valid_mse=errors)
        return baseline

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_output(directory / WEIGHTS_FILE) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in self.state.items()}, str(tmp))
        write_json_atomic(to_plain(self.config), directory / CONFIG_FILE)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> KmerBaseline:
        directory = Path(directory)
        try:
            config = from_plain(KmerBaselineConfig,
                                json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8")),
                                "baseline")
            state = load_file(str(directory / WEIGHTS_FILE))
        except (OSError, json.JSONDecodeError) as error:
            raise IsoformerError(f"{directory}: not a saved k-mer baseline ({error})") from None
        return cls(config, state)
