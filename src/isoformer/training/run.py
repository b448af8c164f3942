"""A training run directory, read and written in this one place.

RUN/
  config.yaml          the resolved RunConfig: preset + overrides + the dataset's tissues and window
                       (the truth for tissues, modalities and the DNA window); for a k-mer
                       baseline (`isoformer baseline`), `baseline:` and its KmerBaselineConfig
  normalization.json   per-tissue mean / std of the training targets (log(1 + TPM))
  dataset.json         the dataset: path, sha256 of transcripts.parquet, its metadata
  checkpoints/         Lightning checkpoints: best.ckpt (lowest val_loss) and last.ckpt
  logs/version_<n>/metrics.csv  losses and validation R2 per step / epoch, one folder per session
  model/               the best model, written by `IsoFormer.save_pretrained` (or the baseline's
                       `KmerBaseline.save_pretrained`)
  training.json        best val_loss, the checkpoint it came from, epochs run, crops per modality
                       (a baseline: its penalties and validation MSE per tissue)

    run = Run.open("runs/paper")
    model = run.load_model(device="auto")
    model.predict(records, precision="bf16")
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from isoformer.data.dataset import read_metadata
from isoformer.data.schema import TRANSCRIPTS_FILE
from isoformer.errors import IsoformerError
from isoformer.files import remove_files, write_json_atomic, write_text_atomic
from isoformer.model.config import RunConfig, config_from_dict, save_config
from isoformer.model.isoformer import IsoFormer
from isoformer.model.kmer_baseline import KmerBaseline, KmerBaselineConfig
from isoformer.typed_config import from_plain, to_plain

CONFIG_FILE = "config.yaml"
STATISTICS_FILE = "normalization.json"
DATASET_FILE = "dataset.json"
SUMMARY_FILE = "training.json"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
BASELINE_KEY = "baseline"  # config.yaml of a baseline run: {baseline: KmerBaselineConfig}
# Everything `train --overwrite` removes before a new run starts in the same directory.
RUN_FILES = (CONFIG_FILE, STATISTICS_FILE, DATASET_FILE, SUMMARY_FILE, MODEL_DIR, CHECKPOINTS_DIR,
             LOGS_DIR)


def remove_run_files(directory: Path) -> None:
    """Delete a previous run's files (RUN_FILES) from `directory`, leaving anything else there."""
    remove_files(directory, RUN_FILES)


@dataclass
class TargetStatistics:
    """Per-tissue mean and standard deviation of the training targets (log(1 + TPM))."""

    mean: np.ndarray  # [T] float32
    std: np.ndarray  # [T] float32, floored so standardising never divides by ~0

    @classmethod
    def from_targets(cls, targets: np.ndarray, std_floor: float = 1e-3) -> TargetStatistics:
        """targets: [N, T], NaN = missing; a tissue without any value gets mean 0, std 1."""
        targets = np.asarray(targets, dtype=np.float64)
        observed = np.isfinite(targets).any(axis=0)  # [T]
        filled = np.where(observed, targets, 0.0)  # nan* on an all-NaN column would warn
        mean = np.where(observed, np.nanmean(filled, axis=0), 0.0)
        std = np.where(observed, np.nanstd(filled, axis=0), 1.0)
        return cls(mean=mean.astype(np.float32), std=np.maximum(std, std_floor).astype(np.float32))

    def to_dict(self, tissues: list[str]) -> dict[str, dict[str, float]]:
        return {
            t: {"mean": float(m), "std": float(s)} for t, m, s in zip(tissues, self.mean, self.std)
        }

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, float]], tissues: list[str]) -> TargetStatistics:
        return cls(mean=np.array([data[t]["mean"] for t in tissues], dtype=np.float32),
                   std=np.array([data[t]["std"] for t in tissues], dtype=np.float32))


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def dataset_fingerprint(data_dir: str | Path) -> dict[str, Any]:
    """What identifies a dataset: its path, the sha256 of its transcripts table, its metadata."""
    data_dir = Path(data_dir)
    return {
        "path": str(data_dir.resolve()),
        "transcripts_sha256": _sha256(data_dir / TRANSCRIPTS_FILE),
        "metadata": read_metadata(data_dir),
    }


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise IsoformerError(f"{path}: not valid JSON ({error.msg}); {what}") from None


@dataclass
class Run:
    """A run's facts (config, tissues, target statistics, dataset) and its model."""

    directory: Path
    config: RunConfig | KmerBaselineConfig
    target_statistics: TargetStatistics
    dataset: dict[str, Any]  # `dataset_fingerprint` of the training data

    @classmethod
    def create(cls, directory: str | Path, config: RunConfig | KmerBaselineConfig,
               statistics: TargetStatistics, dataset: dict[str, Any]) -> Run:
        """Write the run's facts into `directory` (created if needed) before training starts."""
        run = cls(Path(directory), config, statistics, dataset)
        run.directory.mkdir(parents=True, exist_ok=True)
        if isinstance(config, KmerBaselineConfig):
            text = yaml.safe_dump({BASELINE_KEY: to_plain(config)}, sort_keys=False)
            write_text_atomic(text, run.directory / CONFIG_FILE)
        else:
            save_config(config, run.directory / CONFIG_FILE)
        write_json_atomic(statistics.to_dict(run.tissues), run.directory / STATISTICS_FILE)
        write_json_atomic(dataset, run.directory / DATASET_FILE)
        return run

    @classmethod
    def open(cls, directory: str | Path) -> Run:
        """Read a run written by `isoformer train` or `isoformer baseline`; a clear error for
        anything else."""
        directory = Path(directory)
        missing = [name for name in (CONFIG_FILE, STATISTICS_FILE, DATASET_FILE)
                   if not (directory / name).is_file()]
        if missing:
            raise IsoformerError(
                f"{directory}: not a training run (no {', '.join(missing)}); create one with "
                "`isoformer train`"
            )
        config_path = directory / CONFIG_FILE
        try:
            data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and set(data) == {BASELINE_KEY}:
                config = from_plain(KmerBaselineConfig, data[BASELINE_KEY], BASELINE_KEY)
            else:
                config = config_from_dict(data)
        except (yaml.YAMLError, IsoformerError) as error:
            raise IsoformerError(f"{config_path}: not a run config ({error})") from None
        facts = config if isinstance(config, KmerBaselineConfig) else config.model
        tissues = list(facts.tissues)
        statistics_path = directory / STATISTICS_FILE
        statistics = _read_json(statistics_path, "rerun `isoformer train`")
        if not isinstance(statistics, dict) or set(statistics) != set(tissues):
            raise IsoformerError(
                f"{statistics_path}: expected the statistics of the {len(tissues)} tissues of "
                f"{config_path}"
            )
        dataset = _read_json(directory / DATASET_FILE, "rerun `isoformer train`")
        return cls(directory, config, TargetStatistics.from_dict(statistics, tissues), dataset)

    # ---- facts ----

    @property
    def is_baseline(self) -> bool:
        return isinstance(self.config, KmerBaselineConfig)

    @property
    def _facts(self) -> Any:
        """Where tissues, modalities and the window live: the model config, or the baseline's."""
        return self.config if isinstance(self.config, KmerBaselineConfig) else self.config.model

    @property
    def tissues(self) -> list[str]:
        return list(self._facts.tissues)

    @property
    def modalities(self) -> list[str]:
        return list(self._facts.modalities)

    @property
    def dna_length(self) -> int:
        """The DNA window (bp) the model was trained on; `train` always records it."""
        if self._facts.dna_length is None:
            raise IsoformerError(f"{self.directory / CONFIG_FILE}: model.dna_length is not set")
        return self._facts.dna_length

    @property
    def model_dir(self) -> Path:
        return self.directory / MODEL_DIR

    @property
    def checkpoints_dir(self) -> Path:
        return self.directory / CHECKPOINTS_DIR

    # ---- training summary ----

    def summary(self) -> dict[str, Any]:
        """training.json: best_val_loss, best_checkpoint, epochs, crops."""
        path = self.directory / SUMMARY_FILE
        if not path.is_file():
            raise IsoformerError(
                f"{self.directory}: training has not finished (no {SUMMARY_FILE}); run "
                "`isoformer train` on it again to resume"
            )
        return _read_json(path, "rerun `isoformer train`")

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(summary, self.directory / SUMMARY_FILE)

    # ---- the model ----

    def write_model(self, save: Callable[[Path], object]) -> None:
        """Replace model/ atomically: `save(directory)` writes into a temporary sibling, which is
        then renamed into place (e.g. `run.write_model(model.save_pretrained)`)."""
        tmp = self.model_dir.with_name(f".{MODEL_DIR}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        save(tmp)
        if self.model_dir.exists():
            shutil.rmtree(self.model_dir)
        os.replace(tmp, self.model_dir)

    def load_model(self, device: str = "cpu") -> IsoFormer | KmerBaseline:
        """The run's best model on `device` (auto, cpu, cuda, cuda:N; a baseline runs on the
        CPU), checked against the run."""
        if not (self.model_dir / "config.json").is_file():
            raise IsoformerError(
                f"{self.directory}: training has not finished (no {MODEL_DIR}/); run "
                "`isoformer train` on it again to resume"
            )
        model = (KmerBaseline.from_pretrained(self.model_dir) if self.is_baseline
                 else IsoFormer.from_pretrained(self.model_dir, device=device))
        saved, expected = model.config, self._facts
        facts = {
            "tissues": (list(saved.tissues), list(expected.tissues)),
            "modalities": (list(saved.modalities), list(expected.modalities)),
            "dna_length": (saved.dna_length, expected.dna_length),
        }
        differing = [name for name, (have, want) in facts.items() if have != want]
        if isinstance(model, IsoFormer) and expected.standardize_targets and not (
            np.allclose(model.target_mean.cpu().numpy(), self.target_statistics.mean)
            and np.allclose(model.target_std.cpu().numpy(), self.target_statistics.std)
        ):
            differing.append("target statistics")
        if differing:
            raise IsoformerError(
                f"{self.model_dir}: the saved model does not belong to this run (its "
                f"{', '.join(differing)} differ from {self.directory / CONFIG_FILE})"
            )
        return model
