"""What a pretraining writes into DIR: its settings (checked on a rerun), the exported encoder
checkpoint, metrics.csv and the loss curves."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from isoformer.encoders.mlm import MlmObjective
from isoformer.errors import IsoformerError
from isoformer.files import atomic_output, remove_files, write_json_atomic, write_text_atomic
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


def prepare_out(out: Path, settings: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
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


def export_checkpoint(objective: MlmObjective, out: Path) -> None:
    """The encoder checkpoint into DIR, each file replaced whole (written beside, renamed)."""
    staging = Path(tempfile.mkdtemp(prefix=".export.", dir=out))
    try:
        objective.save_pretrained(staging)
        for path in staging.iterdir():
            os.chmod(path, 0o644)
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


HISTORY_FIELDS = ("step", "train_loss", "train_accuracy", "heldout_loss", "heldout_accuracy")


def write_metrics(history: list[dict[str, Any]], path: Path) -> None:
    """metrics.csv: a row per evaluation, a figure not measured (step 0's training) empty."""
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
