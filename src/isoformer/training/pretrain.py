"""`isoformer pretrain`: masked-language-model pretraining of one encoder, saved so that training
loads it (`model.encoders.<m>.init=pretrained model.encoders.<m>.checkpoint=DIR`).

    summary = pretrain("rna", preset="tiny", out="pre/rna", data="dataset", max_steps=2000)
    isoformer train --data dataset --preset tiny --out run \\
        model.encoders.rna.init=pretrained model.encoders.rna.checkpoint=pre/rna

What each modality pretrains (the encoder of the preset's `model.encoders.<modality>`, after any
`model.*` override; the objectives are `isoformer.encoders.mlm`):
- dna, NT-v2 encoder (`tiny-nt`, `paper-nt`): masked 6-mer tokens of random windows of the genome
  FASTA (`--fasta`, or the one `--data` was built from), `pretrain.length` bp long (default: the
  preset's `model.dna_length`, else the dataset's), either strand, windows holding an N (or any
  non-ACGT code) redrawn, so N runs and gaps are skipped.
- dna, Enformer encoder (`tiny`, `paper`): masked bases of such windows, exactly the encoder's
  window long; a linear head on each trunk bin predicts the bases of its bin. Enformer itself
  was trained supervised on tracks, not by MLM: this objective is ours (docs/pretraining.md).
  Borzoi encoders have no objective (a clear error).
- rna (NT-v2): masked 6-mer tokens of the dataset's transcripts (`rna`), train split; a longer
  transcript gives a random window of `pretrain.length` bases (default: the encoder's max_length).
- protein (ESM-2): masked residues of the dataset's proteins, train split (non-coding transcripts
  have none), random windows of `pretrain.length` residues (default: the encoder's max_length).
Masking: 15% of the maskable positions, of them 80% masked, 10% random, 10% kept (`pretrain.*`).

Held-out metrics: MLM loss and accuracy on the masked positions of a fixed set of held-out
sequences with fixed masks (`pretrain.eval_sequences`), every `pretrain.eval_every` steps: for
DNA, windows from the last `pretrain.val_fraction` of each chromosome (at least one window long;
training windows never reach into it); for RNA and protein, the dataset's valid split (sequences
also in the train split are dropped from it). Chance is a context-free predictor on those same
positions: the label frequencies of 512 training sequences (add-one smoothed), scored as a
cross-entropy (loss) and by always guessing the most frequent label (accuracy).

DIR/
  config.json + model.safetensors   the encoder checkpoint in its loader's layout (NT-v2: the
                        official `esm.*` + `lm_head.*`; ESM-2: `EsmForMaskedLM`); Enformer:
                        config.json + pytorch_model.bin (trunk) and mlm_head.safetensors (ours)
  pretrain.json         what was pretrained: modality, preset, kind, objective, the resolved config
                        (`model` + `pretrain`), the data (FASTA path and size, or the dataset's
                        path and transcripts sha256)
  checkpoints/last.pt   step, weights (head included), optimizer, schedule, history: where a
                        rerun resumes
  metrics.csv           per evaluation: step, train loss / accuracy since the last one, held-out
                        loss / accuracy
  loss_curve.png        the same as curves, chance marked
  summary.json          `PretrainSummary`

Resuming: rerunning on DIR with the same settings continues from checkpoints/last.pt (every step's
windows and masks follow from the seed and the step, so a resumed run equals an uninterrupted one);
only `pretrain.max_steps` may differ. Different settings are refused unless `overwrite`, which
removes the previous pretraining's files. Checkpoints are written every `eval_every` steps, at the
end, and on Ctrl-C.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from isoformer import __version__
from isoformer.constants import MODALITIES
from isoformer.data.dataset import read_metadata, read_transcripts, resolve_fasta
from isoformer.data.genome import Genome, mask_non_acgtn, reverse_complement
from isoformer.encoders.base import EncoderConfig
from isoformer.encoders.mlm import IGNORE_INDEX, MaskedBatch, Masking, MlmObjective, build_objective
from isoformer.errors import IsoformerError
from isoformer.files import atomic_output, remove_files, write_json_atomic, write_text_atomic
from isoformer.model.config import ModelConfig, apply_overrides, load_preset
from isoformer.typed_config import to_plain
from isoformer.typed_config import differing_keys

log = logging.getLogger(__name__)

SETTINGS_FILE = "pretrain.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"
CURVE_FILE = "loss_curve.png"
CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
# Files a pretraining writes into DIR (what `overwrite` removes; anything else is left alone).
PRETRAIN_FILES = (SETTINGS_FILE, SUMMARY_FILE, METRICS_FILE, CURVE_FILE, CHECKPOINTS_DIR,
                  "config.json", "model.safetensors", "pytorch_model.bin", "mlm_head.safetensors",
                  "generation_config.json")
SETTINGS_VERSION = 1
# Settings a resumed pretraining may change: more steps continue a finished one.
RESUMABLE_CHANGES = frozenset({"config.pretrain.max_steps"})
# The encoder kinds each modality can pretrain (`isoformer.encoders.mlm` objectives).
MODALITY_KINDS = {"dna": ("nucleotide_transformer", "enformer"),
                  "rna": ("nucleotide_transformer",), "protein": ("esm2",)}
WINDOW_TRIES = 100  # draws per DNA window before a genome is declared (almost) all N
CHANCE_SEQUENCES = 512  # training sequences the context-free baseline's frequencies come from


@dataclass
class PretrainConfig:
    """Pretraining settings (overridable as `pretrain.<field>=value`)."""

    max_steps: int = 2000
    batch_size: int = 16
    lr: float = 5e-4  # peak, after a linear warm-up; then inverse square-root decay (NT-v2's)
    warmup_steps: int = 100
    weight_decay: float = 0.01
    gradient_clip_val: float | None = 1.0
    mask_rate: float = 0.15
    mask_token_share: float = 0.8
    random_token_share: float = 0.1
    # DNA window (bp) / longest RNA (bases) or protein (residues) window; None = the default of
    # the modality (module docstring). An Enformer's window is its max_length.
    length: int | None = None
    eval_every: int = 100  # steps between held-out evaluations (and checkpoints)
    eval_sequences: int = 128  # held-out windows / sequences scored at each evaluation
    val_fraction: float = 0.05  # DNA: the tail of each chromosome held out
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [name for name in ("max_steps", "batch_size", "eval_every", "eval_sequences")
               if getattr(self, name) < 1]
        if self.lr <= 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            bad.append("lr/warmup_steps/weight_decay")
        if not 0.0 <= self.val_fraction < 1.0 or (self.length is not None and self.length < 1):
            bad.append("val_fraction/length")
        if bad:
            raise IsoformerError(f"pretrain: {', '.join(bad)} out of range")
        self.masking()  # checks the rates

    def masking(self) -> Masking:
        return Masking(self.mask_rate, self.mask_token_share, self.random_token_share)


@dataclass
class PretrainRunConfig:
    """The preset's model (its encoders; `model.*` overrides) and the pretraining settings."""

    model: ModelConfig
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass(frozen=True)
class PretrainSummary:
    out: Path
    modality: str
    kind: str
    objective: str
    steps: int  # optimiser steps done in all sessions
    resumed_from: int | None  # the step this session started from (None: a fresh start)
    heldout_loss: float
    heldout_accuracy: float
    initial_heldout_loss: float | None  # at step 0 (the initial weights)
    initial_heldout_accuracy: float | None
    chance_loss: float  # held-out cross-entropy of the training label frequencies (unigram)
    chance_accuracy: float  # held-out accuracy of always guessing the most frequent label
    uniform_accuracy: float  # 1 / classes
    heldout_positions: int  # masked positions the held-out figures average over
    train_sequences: int | None  # distinct sequences (RNA, protein); None for genome windows
    heldout_sequences: int
    length: int  # window / crop length in sequence units
    unit: str
    seconds: float  # training time of all sessions
    train_overrides: list[str]  # what `isoformer train` needs to load DIR

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["out"] = str(self.out)
        return data

    def describe(self) -> str:
        return (
            f"pretrained the {self.modality} encoder ({self.kind}: {self.objective}) for "
            f"{self.steps} steps: held-out loss {self.heldout_loss:.3f} (chance "
            f"{self.chance_loss:.3f}), accuracy {self.heldout_accuracy:.3f} (chance "
            f"{self.chance_accuracy:.3f}); train with {' '.join(self.train_overrides)}"
        )


# ------------------------------------------------------------------------------------- corpora
def _rng(seed: int, *key: int) -> np.random.Generator:
    """A generator for (seed, key): each step's windows and masks are their own stream."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _torch_generator(seed: int, *key: int) -> torch.Generator:
    state = np.random.SeedSequence(seed, spawn_key=key).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class GenomeWindows:
    """Random N-free windows of a FASTA, either strand; chromosome tails held out."""

    def __init__(self, fasta: Path, length: int, val_fraction: float):
        self.fasta, self.length = Path(fasta), length
        self.genome = Genome(fasta)
        self.train: list[tuple[str, int, int]] = []
        self.heldout: list[tuple[str, int, int]] = []
        for chrom in self.genome.chroms:
            size = self.genome.chrom_length(chrom)
            tail = max(math.ceil(val_fraction * size), length) if (
                val_fraction > 0 and size >= 2 * length) else 0
            if size - tail >= length:
                self.train.append((chrom, 0, size - tail))
            if tail:
                self.heldout.append((chrom, size - tail, size))
        if not self.train or not self.heldout:
            raise IsoformerError(
                f"{fasta}: no sequence is at least {2 * length} bp long, so no {length}-bp "
                "window can be held out; pass a larger genome or set pretrain.length lower"
            )

    def sample(self, rng: np.random.Generator, n: int, heldout: bool = False) -> list[str]:
        regions = self.heldout if heldout else self.train
        weights = np.array([end - start - self.length + 1 for _, start, end in regions], float)
        weights /= weights.sum()
        windows = []
        for _ in range(n):
            for _ in range(WINDOW_TRIES):
                chrom, start, end = regions[int(rng.choice(len(regions), p=weights))]
                at = int(rng.integers(start, end - self.length + 1))
                window = mask_non_acgtn(self.genome.fetch(chrom, at, at + self.length))[0]
                if "N" not in window:
                    break
            else:
                raise IsoformerError(
                    f"{self.fasta}: no N-free {self.length}-bp window in {WINDOW_TRIES} draws; "
                    "the genome is (almost) all N or set pretrain.length lower"
                )
            windows.append(reverse_complement(window) if rng.random() < 0.5 else window)
        return windows

    def describe(self) -> dict[str, Any]:
        return {"windows": "genome", "length": self.length,
                "train_bases": sum(end - start for _, start, end in self.train),
                "heldout_bases": sum(end - start for _, start, end in self.heldout)}

    def close(self) -> None:
        self.genome.close()


class SequenceCorpus:
    """Distinct non-empty sequences (a dataset's RNAs or proteins); longer ones give random
    windows of `length`."""

    def __init__(self, train: Sequence[str], heldout: Sequence[str], length: int, what: str):
        self.train = sorted({s for s in train if s})
        known = set(self.train)
        self.heldout_pool = sorted({s for s in heldout if s and s not in known})
        self.length = length
        if not self.train or not self.heldout_pool:
            raise IsoformerError(
                f"pretraining needs {what} in the dataset's train and valid splits (found "
                f"{len(self.train)} and {len(self.heldout_pool)} distinct ones)"
            )

    def _crop(self, rng: np.random.Generator, sequence: str) -> str:
        if len(sequence) <= self.length:
            return sequence
        start = int(rng.integers(0, len(sequence) - self.length + 1))
        return sequence[start : start + self.length]

    def sample(self, rng: np.random.Generator, n: int, heldout: bool = False) -> list[str]:
        if heldout:
            order = rng.permutation(len(self.heldout_pool))[:n]
            return [self._crop(rng, self.heldout_pool[i]) for i in order]
        return [self._crop(rng, self.train[int(i)]) for i in rng.integers(0, len(self.train), n)]

    def describe(self) -> dict[str, Any]:
        return {"train_sequences": len(self.train), "heldout_pool": len(self.heldout_pool),
                "length": self.length}

    def close(self) -> None:
        pass


Corpus = GenomeWindows | SequenceCorpus


# ------------------------------------------------------------------------------ configuration
def resolve_pretrain_config(
    modality: str, preset: str, overrides: Sequence[str] = (), **explicit: Any
) -> tuple[PretrainRunConfig, EncoderConfig]:
    """Preset -> overrides (`model.*`, `pretrain.*`) -> explicit pretrain fields; and (a copy
    of) the modality's encoder config, checked to have an objective."""
    if modality not in MODALITIES:
        raise IsoformerError(
            f"unknown modality {modality!r}: choose one of {', '.join(MODALITIES)}"
        )
    model = load_preset(preset).model
    config = apply_overrides(PretrainRunConfig(model=model), list(overrides))
    changes = {name: value for name, value in explicit.items() if value is not None}
    config = dataclasses.replace(config, pretrain=dataclasses.replace(config.pretrain, **changes))
    if modality not in config.model.encoders:
        raise IsoformerError(f"preset {preset!r} has no {modality} encoder")
    encoder = copy.deepcopy(config.model.encoders[modality])
    if encoder.kind not in MODALITY_KINDS[modality]:
        hint = (" (the DNA encoders with an objective: NT-v2, e.g. --preset tiny-nt, and "
                "Enformer)" if modality == "dna" else "")
        raise IsoformerError(
            f"--modality {modality}: preset {preset!r} has a {encoder.kind} {modality} encoder, "
            f"which has no masked pretraining objective here{hint}"
        )
    return config, encoder


def _dna_length(config: PretrainRunConfig, data: Path | None) -> int:
    if config.pretrain.length is not None:
        return config.pretrain.length
    if config.model.dna_length is not None:
        return config.model.dna_length
    if data is not None:
        return int(read_metadata(data)["dna_length"])
    return 1024


def _open_corpus(modality: str, config: PretrainRunConfig, encoder: EncoderConfig,
                 objective: MlmObjective, fasta: Path | None, data: Path | None) -> Corpus:
    pretrain = config.pretrain
    if modality == "dna":
        length = objective.max_length if encoder.kind == "enformer" else _dna_length(config, data)
        if length > objective.max_length:
            raise IsoformerError(
                f"pretrain: {length}-bp DNA windows exceed the {encoder.kind} encoder's "
                f"{objective.max_length} bp; set pretrain.length lower"
            )
        genome = fasta if fasta is not None else resolve_fasta(data, read_metadata(data))
        return GenomeWindows(Path(genome), length, pretrain.val_fraction)
    length = min(pretrain.length or encoder.max_length or objective.max_length,
                 objective.max_length)
    column = "rna" if modality == "rna" else "protein"
    train = read_transcripts(data, "train")[column].to_list()
    heldout = read_transcripts(data, "valid")[column].to_list()
    what = "transcripts" if modality == "rna" else "proteins"
    return SequenceCorpus(train, heldout, length, what)


def _check_sources(modality: str, fasta: Path | None, data: Path | None) -> None:
    if modality not in MODALITIES:
        raise IsoformerError(
            f"unknown modality {modality!r}: choose one of {', '.join(MODALITIES)}"
        )
    if fasta is not None and data is not None:
        raise IsoformerError("pass --fasta or --data, not both")
    if modality == "dna":
        if fasta is None and data is None:
            raise IsoformerError(
                "--modality dna reads genome windows: pass --fasta FASTA or --data DATASET"
            )
        if fasta is not None and not Path(fasta).is_file():
            raise IsoformerError(f"genome FASTA {fasta} not found")
        return
    if data is None:
        raise IsoformerError(
            f"--modality {modality} reads the dataset's {modality} sequences: pass --data DATASET"
            + (" (--fasta is for --modality dna)" if fasta is not None else "")
        )


def _data_identity(fasta: Path | None, data: Path | None, modality: str) -> dict[str, Any]:
    if data is not None:
        from isoformer.training.run import dataset_fingerprint

        fingerprint = dataset_fingerprint(data)
        identity = {"dataset": fingerprint["path"],
                    "transcripts_sha256": fingerprint["transcripts_sha256"]}
        if modality == "dna":
            genome = resolve_fasta(data, fingerprint["metadata"])
            identity["fasta"] = str(genome.resolve())
            identity["fasta_bytes"] = genome.stat().st_size
        return identity
    assert fasta is not None
    return {"fasta": str(Path(fasta).resolve()), "fasta_bytes": Path(fasta).stat().st_size}


# ------------------------------------------------------------------------------------ run dir
def _prepare_out(out: Path, settings: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """Create or check DIR; return the checkpoint to resume from (None: a fresh start)."""
    settings_path = out / SETTINGS_FILE
    if settings_path.exists():
        if overwrite:
            log.info("--overwrite: removing the previous pretraining's files in %s", out)
            remove_files(out, PRETRAIN_FILES)
        else:
            previous = json.loads(settings_path.read_text(encoding="utf-8"))
            differing = [key for key in differing_keys(previous, settings)
                         if key not in RESUMABLE_CHANGES and key != "isoformer_version"]
            if differing:
                raise IsoformerError(
                    f"{out}: holds a pretraining with other settings ({', '.join(differing)}); "
                    "use another --out or --overwrite"
                )
            write_json_atomic(settings, settings_path)  # max_steps as this session asks
            last = out / CHECKPOINTS_DIR / LAST_CHECKPOINT
            if last.exists():
                log.info("resuming from %s", last)
                return torch.load(last, map_location="cpu", weights_only=False)  # our own file
            return None
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise IsoformerError(
            f"{out} exists and is not a pretraining directory (no {SETTINGS_FILE}); choose "
            "another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(settings, settings_path)
    return None


def _export(objective: MlmObjective, out: Path) -> None:
    """The encoder checkpoint into DIR, each file replaced whole (written beside, renamed)."""
    staging = Path(tempfile.mkdtemp(prefix=".export.", dir=out))
    try:
        objective.save_pretrained(staging)
        for path in staging.iterdir():
            os.chmod(path, 0o644)
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------- metrics
@dataclass
class _Tally:
    loss_sum: float = 0.0
    correct: int = 0
    positions: int = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean loss over the selected positions' logits [N, C] and labels [N] (a graph for
        backward), tallied."""
        if not len(labels):
            return logits.sum() * 0.0  # nothing selected in this batch
        loss = F.cross_entropy(logits.float(), labels)
        self.loss_sum += float(loss.detach()) * len(labels)
        self.correct += int((logits.argmax(-1) == labels).sum())
        self.positions += len(labels)
        return loss

    @property
    def loss(self) -> float:
        return self.loss_sum / self.positions if self.positions else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.positions if self.positions else float("nan")


def _evaluate(objective: MlmObjective, batches: list[MaskedBatch], device: torch.device
              ) -> _Tally:
    tally = _Tally()
    objective.eval()
    with torch.no_grad():
        for batch in batches:
            batch = batch.to(device)
            tally.add(*objective.predict(batch))
    objective.train()
    return tally


def _chance(objective: MlmObjective, corpus: Corpus, heldout: list[MaskedBatch],
            settings: PretrainConfig) -> dict[str, float]:
    """The context-free (unigram) predictor's figures on the held-out positions: label
    frequencies counted over CHANCE_SEQUENCES training sequences (every maskable position,
    add-one smoothing); accuracy of always guessing the most frequent one, and cross-entropy.
    (The entropy of the held-out labels themselves would be biased low for NT-v2's 4,107
    classes over a few thousand positions.)"""
    sequences = corpus.sample(_rng(settings.seed, 4), CHANCE_SEQUENCES)
    everything = Masking(rate=1.0, mask_share=0.0, random_share=0.0)
    generator = _torch_generator(settings.seed, 5)
    counts = torch.zeros(objective.n_classes, dtype=torch.float64)
    for start in range(0, len(sequences), 64):
        labels = objective.masked_batch(sequences[start : start + 64], everything,
                                        generator).labels
        counts += torch.bincount(labels[labels != IGNORE_INDEX],
                                 minlength=objective.n_classes).double()
    log_p = ((counts + 1) / (counts.sum() + objective.n_classes)).log()
    labels = torch.cat([b.labels[b.labels != IGNORE_INDEX] for b in heldout])
    return {"accuracy": float((labels == counts.argmax()).double().mean()),
            "loss": float(-log_p[labels].mean()), "positions": len(labels)}


HISTORY_FIELDS = ("step", "train_loss", "train_accuracy", "heldout_loss", "heldout_accuracy")


def _write_metrics(history: list[dict[str, Any]], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in HISTORY_FIELDS})
    write_text_atomic(buffer.getvalue(), path)


def plot_pretraining(history: list[dict[str, Any]], chance: dict[str, float], path: Path,
                     title: str = "") -> Path:
    """Training and held-out MLM loss (left) and accuracy (right) against steps, chance dashed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.6))
    loss_ax, accuracy_ax = fig.subplots(1, 2)
    steps = [row["step"] for row in history]
    for ax, metric, name in ((loss_ax, "loss", "MLM loss"), (accuracy_ax, "accuracy",
                                                             "accuracy (masked positions)")):
        for split, color in (("train", "#4C72B0"), ("heldout", "#DD8452")):
            values = [np.nan if row.get(f"{split}_{metric}") is None
                      else row[f"{split}_{metric}"] for row in history]
            ax.plot(steps, values, marker="o", markersize=3, color=color,
                    label="held-out" if split == "heldout" else "training")
        ax.axhline(chance[metric], color="black", linestyle="--", linewidth=1,
                   label=f"chance ({chance[metric]:.3f})")
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.legend(loc="best", frameon=False, fontsize=8)
    fig.suptitle(title)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    return path


# ------------------------------------------------------------------------------------ training
def _lr_factor(warmup: int):
    """Linear warm-up to 1 over `warmup` steps, then 1 / sqrt(step / warmup) (NT-v2's schedule);
    it does not depend on max_steps, so a run extended on resume follows the same schedule."""
    warmup = max(warmup, 1)
    return lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))


def _progress(enabled: bool):
    import rich.progress

    columns = (
        rich.progress.TextColumn("[progress.description]{task.description}"),
        rich.progress.BarColumn(),
        rich.progress.MofNCompleteColumn(),
        rich.progress.TimeElapsedColumn(),
        rich.progress.TimeRemainingColumn(),
    )
    return rich.progress.Progress(*columns, disable=not enabled)


def pretrain(
    modality: str,
    preset: str = "tiny",
    out: str | Path = "pretrained",
    fasta: str | Path | None = None,
    data: str | Path | None = None,
    overrides: Sequence[str] = (),
    max_steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    device: str = "auto",
) -> PretrainSummary:
    """Pretrain the `modality` encoder of `preset` into `out`, or resume it (module docstring).

    `overrides`: `model.*` fields of the preset (e.g. a deeper encoder) and `pretrain.*` fields
    of `PretrainConfig`; max_steps, batch_size, lr and seed set those `pretrain` fields.
    """
    from isoformer.model.prediction import resolve_device

    out = Path(out)
    fasta = None if fasta is None else Path(fasta)
    data = None if data is None else Path(data)
    _check_sources(modality, fasta, data)
    config, encoder_config = resolve_pretrain_config(
        modality, preset, overrides, max_steps=max_steps, batch_size=batch_size, lr=lr, seed=seed
    )
    if encoder_config.kind == "enformer":  # its window is the encoder's: the run's dna_length
        encoder_config.max_length = (config.pretrain.length or encoder_config.max_length
                                     or _dna_length(config, data))
    torch_device = resolve_device(device)

    torch.manual_seed(config.pretrain.seed)  # the initial weights of a random encoder and head
    objective = build_objective(encoder_config)
    corpus = _open_corpus(modality, config, encoder_config, objective, fasta, data)
    try:
        settings = {
            "format_version": SETTINGS_VERSION,
            "isoformer_version": __version__,
            "modality": modality,
            "preset": preset,
            "kind": encoder_config.kind,
            "objective": objective.description,
            "config": to_plain(config),
            "data": _data_identity(fasta, data, modality),
            "corpus": corpus.describe(),
        }
        resume = _prepare_out(out, settings, overwrite)
        return _train(objective, corpus, config.pretrain, out, modality, resume, progress,
                      torch_device)
    finally:
        corpus.close()


def _train(objective: MlmObjective, corpus: Corpus, settings: PretrainConfig, out: Path,
           modality: str, resume: dict[str, Any] | None, progress: bool,
           device: torch.device) -> PretrainSummary:
    masking = settings.masking()
    objective.to(device).train()
    parameters = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, betas=(0.9, 0.98), eps=1e-6,
                                  weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(settings.warmup_steps))

    # The held-out set: fixed sequences and fixed masks, the same at every evaluation.
    heldout_sequences = corpus.sample(_rng(settings.seed, 2), settings.eval_sequences,
                                      heldout=True)
    mask_generator = _torch_generator(settings.seed, 3)
    heldout = [
        objective.masked_batch(heldout_sequences[i : i + settings.batch_size], masking,
                               mask_generator)
        for i in range(0, len(heldout_sequences), settings.batch_size)
    ]
    chance = _chance(objective, corpus, heldout, settings)

    step, history, seconds = 0, [], 0.0
    resumed_from = None
    if resume is not None:
        objective.load_state_dict(resume["objective"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["scheduler"])
        step, history, seconds = resume["step"], resume["history"], resume["seconds"]
        resumed_from = step
    else:
        initial = _evaluate(objective, heldout, device)
        history.append({"step": 0, "train_loss": None, "train_accuracy": None,
                        "heldout_loss": initial.loss, "heldout_accuracy": initial.accuracy})

    def save() -> None:
        state = {"format": 1, "step": step, "objective": objective.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
                 "history": history, "seconds": seconds}
        with atomic_output(out / CHECKPOINTS_DIR / LAST_CHECKPOINT) as tmp:
            torch.save(state, tmp)
        _export(objective, out)
        _write_metrics(history, out / METRICS_FILE)

    title = f"{modality} ({objective.kind}): {objective.description}"
    tally, started = _Tally(), time.perf_counter()
    try:
        with _progress(progress) as bar:
            task = bar.add_task(f"pretrain {modality}", total=settings.max_steps, completed=step)
            while step < settings.max_steps:
                sequences = corpus.sample(_rng(settings.seed, 0, step), settings.batch_size)
                batch = objective.masked_batch(sequences, masking,
                                               _torch_generator(settings.seed, 1, step)).to(device)
                loss = tally.add(*objective.predict(batch))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if settings.gradient_clip_val is not None:
                    torch.nn.utils.clip_grad_norm_(parameters, settings.gradient_clip_val)
                optimizer.step()
                schedule.step()
                step += 1
                if step % settings.eval_every == 0 or step == settings.max_steps:
                    scored = _evaluate(objective, heldout, device)
                    history.append({"step": step, "train_loss": tally.loss,
                                    "train_accuracy": tally.accuracy,
                                    "heldout_loss": scored.loss,
                                    "heldout_accuracy": scored.accuracy})
                    message = (f"step {step}: train loss {tally.loss:.3f}, held-out loss "
                               f"{scored.loss:.3f}, accuracy {scored.accuracy:.3f} (chance "
                               f"{chance['accuracy']:.3f})")
                    if progress:
                        bar.update(task, description=f"pretrain {modality}: held-out acc "
                                   f"{scored.accuracy:.3f}")
                    else:
                        log.info("%s", message)
                    tally = _Tally()
                    seconds += time.perf_counter() - started
                    started = time.perf_counter()
                    save()
                bar.update(task, completed=step)
    except KeyboardInterrupt:
        seconds += time.perf_counter() - started
        log.info("interrupted at step %d: checkpoint written to %s", step, out / CHECKPOINTS_DIR)
        save()
        plot_pretraining(history, chance, out / CURVE_FILE, title)
        raise
    if resume is not None and step == resumed_from:
        save()  # nothing to train (max_steps reached): the files are rewritten as they were
    plot_pretraining(history, chance, out / CURVE_FILE, title)

    first, last = history[0], history[-1]
    summary = PretrainSummary(
        out=out,
        modality=modality,
        kind=objective.kind,
        objective=objective.description,
        steps=step,
        resumed_from=resumed_from,
        heldout_loss=last["heldout_loss"],
        heldout_accuracy=last["heldout_accuracy"],
        initial_heldout_loss=first["heldout_loss"] if first["step"] == 0 else None,
        initial_heldout_accuracy=first["heldout_accuracy"] if first["step"] == 0 else None,
        chance_loss=chance["loss"],
        chance_accuracy=chance["accuracy"],
        uniform_accuracy=1.0 / objective.n_classes,
        heldout_positions=chance["positions"],
        train_sequences=len(corpus.train) if isinstance(corpus, SequenceCorpus) else None,
        heldout_sequences=len(heldout_sequences),
        length=corpus.length,
        unit=objective.unit,
        seconds=round(seconds, 1),
        train_overrides=[f"model.encoders.{modality}.init=pretrained",
                         f"model.encoders.{modality}.checkpoint={out.resolve()}"],
    )
    write_json_atomic(summary.to_json(), out / SUMMARY_FILE)
    log.info("%s", summary.describe())
    return summary
