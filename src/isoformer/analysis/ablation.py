"""`isoformer ablate`: the paper's comparisons (Tables 2-5, Figure 3), one command per study.

    ablate(dataset, "tiny", "modalities", seeds=3, out="ablations")

Each study is a list of settings; each setting is trained (`training.fit.train`) and evaluated
on the test split (`training.evaluate.evaluate_run`) once per seed, into
DIR/runs/<study>/<setting>/seed<N>/. Beside the deep models every study fits the k-mer ridge
(`training.baseline.fit_baseline`, the peer a user would try first) on each modality set its
settings read, once (it has no seed), so each table shows what a linear model gets from the same
sequences. A run with its `metrics_test.json` and `ablation.json`
(the setting and its wall time) is finished and skipped on a rerun, so an interrupted study
resumes (an unfinished run resumes from its own last checkpoint) and the tables can be rebuilt
from what finished (`write_study_tables`). Per study:
  DIR/<study>.csv  one row per run: setting, seed, mean and per-tissue R2 / Spearman / Pearson,
                   isoform Spearman, epochs, wall seconds
  DIR/<study>.md   mean +- std over seeds per setting, the paper's number beside ours where the
                   setting matches one of its rows
  DIR/<study>.png  grouped bars: mean R2 and Spearman per setting, std over seeds as error bars
  DIR/figure3.png  (modalities) per-tissue R2 of the full model stacked on the DNA-only model
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isoformer.analysis.plots import plot_grouped_bars, plot_stacked_r2_per_tissue
from isoformer.constants import MODALITIES
from isoformer.errors import IsoformerError
from isoformer.files import write_json_atomic, write_text_atomic
from isoformer.model.config import load_preset

log = logging.getLogger(__name__)

STUDIES = ("modalities", "encoders", "aggregation", "pretraining")
MODALITY_NAMES = {"dna": "DNA", "rna": "RNA", "protein": "protein"}
# The DNA encoder each preset family uses for the encoders study (Table 3): the RNA and protein
# encoders and everything else are the same preset's.
DNA_ENCODER_PRESETS = {
    "tiny": {"nucleotide_transformer": "tiny-nt", "enformer": "tiny", "borzoi": "tiny-borzoi"},
    "paper": {"nucleotide_transformer": "paper-nt", "enformer": "paper",
              "borzoi": "paper-borzoi"},
}
DNA_ENCODER_NAMES = {"nucleotide_transformer": "NT-v2", "enformer": "Enformer",
                     "borzoi": "Borzoi"}
# The paper's test R2 / Spearman (mean over tissues) for the settings it reports
# (../shared/REFERENCE.md); None where it gives no number.
PAPER_NUMBERS: dict[str, dict[str, tuple[float | None, float | None]]] = {
    "modalities": {"DNA": (0.13, 0.43), "RNA": (0.36, 0.61), "protein": (0.20, 0.46),
                   "DNA + RNA + protein": (0.53, 0.72)},
    "encoders": {"Enformer": (0.53, 0.72), "NT-v2": (0.43, None)},
    "pretraining": {"all random": (0.10, None), "all pre-trained": (0.53, 0.72)},
}
RUN_RECORD = "ablation.json"
METRICS = ("r2", "spearman", "pearson")


@dataclass
class Setting:
    """One row of a study: the preset and overrides `train` gets, and its modalities."""

    name: str
    preset: str
    overrides: tuple[str, ...] = ()
    modalities: tuple[str, ...] | None = None
    # "kmer": the k-mer ridge on `modalities`, fitted instead of a model trained from `preset`;
    # deterministic, so it runs for the first seed only, and the study's overrides do not apply.
    baseline: str | None = None

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-")


@dataclass
class StudyResult:
    study: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def modality_settings(preset: str) -> list[Setting]:
    """All 7 non-empty subsets of {dna, rna, protein} (Table 2), singles first."""
    subsets = [c for size in (1, 2, 3) for c in itertools.combinations(MODALITIES, size)]
    return [Setting(" + ".join(MODALITY_NAMES[m] for m in subset), preset, (), subset)
            for subset in subsets]


def encoder_settings(preset: str) -> list[Setting]:
    """The DNA encoder NT-v2 vs Enformer vs Borzoi, the rest of `preset` fixed (Table 3)."""
    family = "paper" if preset.startswith("paper") else "tiny"
    return [Setting(DNA_ENCODER_NAMES[kind], name)
            for kind, name in DNA_ENCODER_PRESETS[family].items()]


def aggregation_settings(preset: str) -> list[Setting]:
    """Every aggregation kind the config knows (Table 4)."""
    from isoformer.model.config import aggregation_kinds

    return [Setting(kind, preset, (f"model.aggregation.kind={kind}",))
            for kind in aggregation_kinds()]


def pretraining_settings(preset: str, checkpoints: dict[str, str]) -> list[Setting]:
    """Pre-trained vs random initialisation per encoder, singly and all together (Table 5).

    Pre-trained: the preset's own checkpoint where it names one (the paper presets), else the
    directory in `checkpoints` (from `isoformer pretrain`). A modality with neither stops the
    study: comparing random with random would answer nothing.
    """
    encoders = load_preset(preset).model.encoders
    pretrained: dict[str, tuple[str, ...]] = {}
    for modality in MODALITIES:
        if modality in checkpoints:
            pretrained[modality] = (f"model.encoders.{modality}.init=pretrained",
                                    f"model.encoders.{modality}.checkpoint={checkpoints[modality]}")
        elif encoders[modality].init == "pretrained":
            pretrained[modality] = ()
    missing = [m for m in MODALITIES if m not in pretrained]
    if missing:
        raise IsoformerError(
            f"ablate --study pretraining: no pre-trained {', '.join(missing)} encoder for preset "
            f"{preset!r}; pass --checkpoint {missing[0]}=DIR (from `isoformer pretrain`) for each, "
            "or use a preset with official checkpoints"
        )
    random = {m: (f"model.encoders.{m}.init=random",) for m in MODALITIES}

    def setting(name: str, pretrained_ones: Sequence[str]) -> Setting:
        overrides = [o for m in MODALITIES
                     for o in (pretrained[m] if m in pretrained_ones else random[m])]
        return Setting(name, preset, tuple(overrides))

    return [setting("all random", ()),
            *(setting(f"{MODALITY_NAMES[m]} pre-trained", (m,)) for m in MODALITIES),
            setting("all pre-trained", MODALITIES)]


def kmer_settings(settings: Sequence[Setting]) -> list[Setting]:
    """The k-mer ridge on each distinct modality set of `settings`, in their order."""
    subsets = dict.fromkeys(s.modalities or tuple(load_preset(s.preset).model.modalities)
                            for s in settings)
    return [Setting(f"k-mer ridge ({' + '.join(MODALITY_NAMES[m] for m in subset)})",
                    settings[0].preset, (), subset, baseline="kmer") for subset in subsets]


def study_settings(study: str, preset: str, checkpoints: dict[str, str] | None = None
                   ) -> list[Setting]:
    """The study's deep-model settings, then its k-mer ridge settings."""
    if study == "modalities":
        settings = modality_settings(preset)
    elif study == "encoders":
        settings = encoder_settings(preset)
    elif study == "aggregation":
        settings = aggregation_settings(preset)
    elif study == "pretraining":
        settings = pretraining_settings(preset, checkpoints or {})
    else:
        raise IsoformerError(f"unknown study {study!r}: choose {', '.join(STUDIES)} or all")
    return [*settings, *kmer_settings(settings)]


def _run_dir(out: Path, study: str, setting: Setting, seed: int) -> Path:
    return out / "runs" / study / setting.slug / f"seed{seed}"


def _finished(run_dir: Path) -> bool:
    return (run_dir / RUN_RECORD).is_file() and (run_dir / "metrics_test.json").is_file()


def run_setting(data: Path, out: Path, study: str, setting: Setting, seed: int,
                overrides: Sequence[str], progress: bool) -> Path:
    """Train and evaluate one (setting, seed) unless finished; its run directory."""
    from isoformer.training.evaluate import evaluate_run
    from isoformer.training.fit import train

    run_dir = _run_dir(out, study, setting, seed)
    if _finished(run_dir):
        log.info("ablate %s: %s seed %d finished before, skipped", study, setting.name, seed)
        return run_dir
    start = time.perf_counter()
    if setting.baseline:
        from isoformer.training.baseline import fit_baseline

        log.info("ablate %s: fitting %s", study, setting.name)
        overrides = ()
        # overwrite: an interrupted fit may have left its run files
        run = fit_baseline(data, run_dir, setting.baseline, modalities=setting.modalities,
                           overwrite=True)
    else:
        log.info("ablate %s: training %s, seed %d", study, setting.name, seed)
        run = train(data, setting.preset, run_dir, overrides=[*overrides, *setting.overrides],
                    modalities=setting.modalities, seed=seed, progress=progress)
    evaluate_run(run, data, split="test", progress=progress)
    record = {"study": study, "setting": setting.name, "seed": seed, "preset": setting.preset,
              "baseline": setting.baseline, "overrides": [*overrides, *setting.overrides],
              "wall_seconds": time.perf_counter() - start}
    write_json_atomic(record, run_dir / RUN_RECORD)
    return run_dir


def _row(run_dir: Path) -> dict[str, Any]:
    record = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
    metrics = json.loads((run_dir / "metrics_test.json").read_text(encoding="utf-8"))
    summary = json.loads((run_dir / "training.json").read_text(encoding="utf-8"))
    row = {"setting": record["setting"], "seed": record["seed"],
           **{f"mean_{name}": metrics["mean"][name] for name in METRICS},
           "isoform_spearman": metrics["isoform_spearman"], "epochs": summary["epochs"],
           "wall_seconds": round(record["wall_seconds"], 1)}
    for tissue, values in metrics["per_tissue"].items():
        row.update({f"{name}:{tissue}": values[name] for name in METRICS})
    return row


def collect_rows(out: Path, study: str, settings: Sequence[Setting]) -> list[dict[str, Any]]:
    """Rows of every finished run of `study`, in settings order then seed."""
    rows = []
    for setting in settings:
        folder = out / "runs" / study / setting.slug
        runs = sorted(folder.glob("seed*"), key=lambda d: int(d.name.removeprefix("seed")))
        rows += [_row(run_dir) for run_dir in runs if _finished(run_dir)]
    return rows


def _mean_std(values: Sequence[float | None]) -> tuple[float, float | None] | None:
    """Mean and sample standard deviation (None from a single value) of the defined values."""
    defined = [v for v in values if v is not None]
    if not defined:
        return None
    return float(np.mean(defined)), float(np.std(defined, ddof=1)) if len(defined) > 1 else None


def _cell(stats: tuple[float, float | None] | None) -> str:
    if stats is None:
        return "n/a"
    return f"{stats[0]:.3f}" if stats[1] is None else f"{stats[0]:.3f} +- {stats[1]:.3f}"


def _epochs(rows: Sequence[dict[str, Any]]) -> str:
    """Mean epochs of the runs; "-" for a fitted baseline, which has none."""
    epochs = [r["epochs"] for r in rows if r["epochs"] is not None]
    return f"{np.mean(epochs):.1f}" if epochs else "-"


def modality_gains(r2: dict[frozenset[str], float]) -> dict[str, list[float]]:
    """Per modality m, R2(S + m) - R2(S) for every measured non-empty subset S without m whose
    union with m was measured too (Table 2's "adding a modality helps")."""
    return {m: [r2[subset | {m}] - r2[subset] for subset in r2
                if m not in subset and subset | {m} in r2] for m in MODALITIES}


def modality_order_lines(rows: Sequence[dict[str, Any]], settings: Sequence[Setting]) -> list[str]:
    """The paper's two qualitative claims of Table 2 checked on the deep models' mean test R2:
    all three modalities best, and adding a modality helps on average."""
    r2 = {}
    for setting in settings:
        values = [r["mean_r2"] for r in rows if r["setting"] == setting.name]
        if setting.baseline is None and setting.modalities and values:
            r2[frozenset(setting.modalities)] = float(np.mean(values))
    gains = modality_gains(r2)
    every = [gain for values in gains.values() for gain in values]
    if not every:
        return []
    names = {frozenset(s.modalities): s.name for s in settings if s.modalities and not s.baseline}
    best = max(r2, key=r2.__getitem__)
    per_modality = ", ".join(f"{MODALITY_NAMES[m]} {np.mean(v):+.3f} ({len(v)})"
                             for m, v in gains.items() if v)
    return ["", "The paper's order, on the deep models' mean test R2: best is "
            f"{names[best]} ({r2[best]:.3f}), so all three modalities best: "
            f"{'yes' if best == frozenset(MODALITIES) else 'no'}. Adding a modality (R2 with it "
            f"minus without, mean over the subsets measured both ways): {per_modality}; "
            f"{np.mean(every):+.3f} over all {len(every)} additions, so helps on average: "
            f"{'yes' if np.mean(every) > 0 else 'no'}."]


def study_markdown(study: str, rows: list[dict[str, Any]], settings: Sequence[Setting],
                   preset: str) -> str:
    paper = PAPER_NUMBERS.get(study, {})
    lines = [f"## {study} (preset {preset})", "",
             "| setting | seeds | test R2 | test Spearman | isoform Spearman | epochs | minutes "
             "| paper R2 | paper Spearman |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for setting in settings:
        mine = [r for r in rows if r["setting"] == setting.name]
        if not mine:
            continue
        r2, rho = paper.get(setting.name, (None, None))
        lines.append(
            f"| {setting.name} | {len(mine)} | {_cell(_mean_std([r['mean_r2'] for r in mine]))} "
            f"| {_cell(_mean_std([r['mean_spearman'] for r in mine]))} "
            f"| {_cell(_mean_std([r['isoform_spearman'] for r in mine]))} "
            f"| {_epochs(mine)} "
            f"| {sum(r['wall_seconds'] for r in mine) / 60:.1f} "
            f"| {'-' if r2 is None else r2} | {'-' if rho is None else rho} |"
        )
    lines += ["", "Mean +- standard deviation over seeds of the mean over tissues (test split); "
              "minutes: all seeds together. Paper: its GTEx numbers for the matching setting "
              "(pre-trained paper-size encoders), for shape, not for equality. k-mer ridge: "
              "per-tissue ridge regression on k-mer counts of the same sequences "
              "(`isoformer baseline`), penalties chosen on the validation split, fitted once."]
    if study == "modalities":
        lines += modality_order_lines(rows, settings)
    return "\n".join(lines) + "\n"


def write_study_tables(out: Path, study: str, settings: Sequence[Setting], preset: str
                       ) -> StudyResult:
    """(Re)build DIR/<study>.csv, .md and .png (and figure3.png) from the finished runs."""
    return write_tables_from_rows(out, study, collect_rows(out, study, settings), settings,
                                  preset)


def write_tables_from_rows(out: Path, study: str, rows: list[dict[str, Any]],
                           settings: Sequence[Setting], preset: str) -> StudyResult:
    """DIR/<study>.csv, .md and .png (and figure3.png) from `rows` (as `collect_rows` gives)."""
    result = StudyResult(study, rows)
    if not rows:
        return result
    csv = out / f"{study}.csv"
    from isoformer.files import atomic_output

    with atomic_output(csv) as tmp:
        pl.DataFrame(rows).write_csv(tmp)
    markdown = out / f"{study}.md"
    write_text_atomic(study_markdown(study, rows, settings, preset), markdown)
    names = [s.name for s in settings if any(r["setting"] == s.name for r in rows)]
    bars = {metric: [_mean_std([r[f"mean_{metric}"] for r in rows if r["setting"] == name])
                     for name in names] for metric in ("r2", "spearman")}
    chart = plot_grouped_bars(names, {"R2": bars["r2"], "Spearman": bars["spearman"]},
                              out / f"{study}.png", title=f"{study} (test, mean over seeds)")
    result.files = [csv, markdown, chart]
    if study == "modalities":
        figure = _figure3(out, rows)
        if figure is not None:
            result.files.append(figure)
    return result


def _figure3(out: Path, rows: list[dict[str, Any]]) -> Path | None:
    """Per-tissue R2 (mean over seeds) of the full model stacked on the DNA-only model."""
    by_setting = {name: [r for r in rows if r["setting"] == name]
                  for name in ("DNA", "DNA + RNA + protein")}
    if not all(by_setting.values()):
        return None
    tissues = [key.split(":", 1)[1] for key in rows[0] if key.startswith("r2:")]

    def mean_r2(name: str, tissue: str) -> float:
        values = [r[f"r2:{tissue}"] for r in by_setting[name] if r[f"r2:{tissue}"] is not None]
        return float(np.mean(values)) if values else float("nan")

    return plot_stacked_r2_per_tissue(
        tissues, [mean_r2("DNA", t) for t in tissues],
        [mean_r2("DNA + RNA + protein", t) for t in tissues], out / "figure3.png",
        labels=("DNA only", "DNA + RNA + protein"),
    )


def ablate(data: str | Path, preset: str, study: str, seeds: int | Sequence[int],
           out: str | Path, overrides: Sequence[str] = (),
           checkpoints: dict[str, str] | None = None, progress: bool = True) -> list[StudyResult]:
    """Run `study` (or "all") over `seeds` (a count: 0..n-1, or the seeds) into `out`."""
    data, out = Path(data), Path(out)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise IsoformerError("ablate: --seeds must be at least 1")
    studies = list(STUDIES) if study == "all" else [study]
    plans = {name: study_settings(name, preset, checkpoints) for name in studies}
    results = []
    for name, settings in plans.items():
        for setting, seed in itertools.product(settings, seed_list):
            if setting.baseline and seed != seed_list[0]:
                continue
            run_setting(data, out, name, setting, seed, overrides, progress)
        result = write_study_tables(out, name, settings, preset)
        log.info("ablate %s: %d runs; %s", name, len(result.rows),
                 ", ".join(str(f) for f in result.files))
        results.append(result)
    return results
