"""`isoformer attribute`: attribution maps of the records of a JSON / JSONL file, into a directory.

    summary = attribute_file("runs/demo", "records.jsonl", "attr", modality="rna", method="ism")

The methods, the target and the span are `isoformer.analysis.attribution`'s. Records are read and
validated as `isoformer predict` reads them (`read_records`, `validate_record`), sequences upper
case and RNA with U as T (as the encoders read it). An unreadable or invalid record is skipped,
logged and counted, and makes the command exit 1; a record without the modality's sequence (a
non-coding transcript's protein) is skipped and counted. A record's id is its `transcript_id`,
else its `id`, else its place (`line_3`); ids name the figures, so two records whose ids give one
file name are an error, and so is a `--span` past a record's sequence. Every record is read and
checked before the model runs, and nothing is written before all are attributed.

RNA records giving `utr5_length` and `cds_length` (`isoformer export` writes them from the
dataset's table) get their regions shaded; lengths that do not make up the
RNA are logged and listed in summary.json (`unshaded_figures`), and that figure is drawn
unshaded.

Outputs in `out` (absent or empty), written into a temporary directory renamed whole at the end
(`atomic_directory`):
    attributions.npz   record_ids [N] str, span_starts / span_ends [N] int64, reference [N]
                       float32 (the target of the unmutated record), scores/<i> [L_i] float32
                       (NaN outside the span), and for ism: alphabet (str), ism/<i> [L_i, A]
                       float32 (the delta matrix); i = 0..N-1 in input order
    <record_id>.png    the score track along the sequence (`plot_attribution`)
    summary.json       settings, counts, skipped records, the score's convention, seconds
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from isoformer import __version__
from isoformer.analysis.attribution import (
    METHODS,
    MUTATION_ALPHABETS,
    SCORE_RULES,
    AttributionMethod,
    Target,
    default_span,
    ism_position_scores,
    ism_scores,
    mutant_count,
    parse_span,
    saliency_scores,
)
from isoformer.analysis.attribution_plot import RnaRegions, plot_attribution
from isoformer.constants import RNA_SEQUENCE, SEQUENCE_KEYS, TRANSCRIPT_ID
from isoformer.encoders.base import log_crops
from isoformer.errors import IsoformerError
from isoformer.files import atomic_directory, write_json_atomic
from isoformer.model.isoformer import IsoFormer
from isoformer.model.kmer_baseline import KmerBaseline
from isoformer.model.prediction import (
    Predictor,
    evaluating,
    prediction_batches,
    record_progress,
)
from isoformer.training.predict import model_input, read_records, validate_record
from isoformer.training.run import Run

log = logging.getLogger(__name__)

SCORES_FILE = "attributions.npz"
SUMMARY_FILE = "summary.json"
Record = dict[str, Any]


@dataclass
class RecordAttribution:
    """One record's attribution of one modality: what it asks, then what was found."""

    record_id: str
    where: str  # "line 3" / "record 2", as `read_records` names it
    record: Record  # the model's input: sequences upper case, RNA with U as T
    modality: str
    span: tuple[int, int]
    regions: RnaRegions | None = None  # RNA regions to shade, when the record gives them
    regions_problem: str | None = None  # why the regions the record gives cannot be shaded
    reference: float = float("nan")  # the target of the unmutated record
    scores: np.ndarray | None = None  # [L] float32, NaN outside the span
    ism: np.ndarray | None = None  # [L, A] float32 delta per letter (ism only)

    @property
    def sequence(self) -> str:
        return self.record[SEQUENCE_KEYS[self.modality]]


@dataclass
class Skipped:
    where: str
    reason: str  # "unreadable", "invalid", "no protein_sequence"
    message: str


@dataclass
class AttributionSummary:
    out: Path
    n_records: int  # read from the input
    n_attributed: int
    n_invalid: int  # unreadable or invalid records (part of `skipped`)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> records
    seconds: float = 0.0


def figure_name(record_id: str) -> str:
    """`<record_id>.png`, characters other than letters, digits, `.`, `_`, `-` made `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", record_id) + ".png"


def attribute_file(
    run: Run | str | Path,
    input_path: str | Path,
    out: str | Path,
    modality: str,
    method: AttributionMethod,
    tissue: str | None = None,
    span: str | tuple[int, int] | None = None,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
) -> AttributionSummary:
    """Attribute every record of `input_path` with the run's model and write `out` (see the
    module); `span` is "A:B" or (A, B), `tissue` None for the mean over tissues."""
    from isoformer.data.build import check_output_dir

    start = time.perf_counter()
    run = run if isinstance(run, Run) else Run.open(run)
    input_path, out = Path(input_path), Path(out)
    if modality not in run.modalities:
        raise IsoformerError(f"--modality {modality!r}: the run {run.directory} reads "
                             f"{', '.join(run.modalities)}")
    if method not in METHODS:
        raise IsoformerError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if batch_size < 1:
        raise IsoformerError(f"batch_size must be at least 1 (got {batch_size})")
    target = Target.resolve(run.tissues, tissue)
    span = parse_span(span) if isinstance(span, str) else span
    check_output_dir(out)
    jobs, skipped, n_records = _read_jobs(input_path, run, modality, span)
    model = run.load_model(device)
    if method == "saliency" and isinstance(model, KmerBaseline):
        raise IsoformerError(f"{run.directory}: a k-mer baseline has no gradients; use --method "
                             "ism")
    predictor = Predictor(model)
    with evaluating(model):
        if method == "ism":
            _run_ism(jobs, predictor, target, batch_size, progress)
        else:
            _run_saliency(jobs, model, target, batch_size, progress)  # type: ignore[arg-type]
    log_crops(predictor.crops(), f"attributing {len(jobs)} records")
    counts = Counter(entry.reason for entry in skipped)
    summary = AttributionSummary(out, n_records, len(jobs),
                                 counts["unreadable"] + counts["invalid"], dict(counts),
                                 time.perf_counter() - start)
    settings = {
        "isoformer_version": __version__, "run": str(run.directory), "input": str(input_path),
        "modality": modality, "method": method, "tissue": tissue, "target": target.label,
        "span": None if span is None else f"{span[0]}:{span[1]}",
        "default_span": f"the whole sequence; DNA: the run's TSS-centred {run.dna_length}-bp "
                        "window",
        "alphabet": MUTATION_ALPHABETS[modality] if method == "ism" else None,
        "score": SCORE_RULES[method], "batch_size": batch_size, "device": str(model.device),
    }
    _write_outputs(out, jobs, target, settings, summary, skipped, progress)
    log.info("%s %s of %d records (skipped: %s) in %.1f s; written to %s", modality, method,
             len(jobs), dict(counts) or "none", summary.seconds, out)
    return summary


def _read_jobs(path: Path, run: Run, modality: str, span: tuple[int, int] | None
               ) -> tuple[list[RecordAttribution], list[Skipped], int]:
    """The records to attribute, the skipped ones, and the number read."""
    key = SEQUENCE_KEYS[modality]
    jobs: list[RecordAttribution] = []
    skipped: list[Skipped] = []
    figures: dict[str, str] = {}  # file name -> where its record is
    n_records = 0
    for n_records, entry in enumerate(read_records(path), start=1):
        problem = entry.error or validate_record(entry.record, run.modalities, run.dna_length)
        if problem is not None:
            reason = "unreadable" if entry.error else "invalid"
            skipped.append(Skipped(entry.where, reason, problem.removeprefix(f"{entry.where}: ")))
            log.warning("%s: %s: %s; skipped", path, entry.where, skipped[-1].message)
            continue
        record = _model_record(entry.record)
        if not record.get(key):
            skipped.append(Skipped(entry.where, f"no {key}", f"no {key} to attribute"))
            log.info("%s: %s: no %s; skipped", path, entry.where, key)
            continue
        job = _job(path, entry.where, record, modality, span, run.dna_length)
        name = figure_name(job.record_id)
        if name in figures:
            raise IsoformerError(f"{path}: {entry.where}: record id {job.record_id!r} gives the "
                                 f"figure {name} of {figures[name]} too; make the ids unique")
        figures[name] = entry.where
        jobs.append(job)
    if not jobs:
        raise IsoformerError(f"{path}: no record to attribute ({n_records} read, "
                             f"{len(skipped)} skipped)")
    return jobs, skipped, n_records


def _model_record(record: Record) -> Record:
    """`predict`'s model input (sequences upper case) with RNA U as T, the alphabet ISM mutates;
    the record's other keys (ids, RNA region lengths) kept."""
    inputs = model_input(record)
    return {**record, **inputs, RNA_SEQUENCE: inputs[RNA_SEQUENCE].replace("U", "T")}


def _job(path: Path, where: str, record: Record, modality: str, span: tuple[int, int] | None,
         dna_length: int) -> RecordAttribution:
    key = SEQUENCE_KEYS[modality]
    length = len(record[key])
    if span is not None and span[1] > length:
        raise IsoformerError(f"{path}: {where}: --span {span[0]}:{span[1]} reaches past the end "
                             f"of its {key} ({length} long)")
    record_id = next((record[name] for name in (TRANSCRIPT_ID, "id")
                      if isinstance(record.get(name), str) and record[name]),
                     where.replace(" ", "_"))
    job = RecordAttribution(record_id, where, record, modality,
                            span or default_span(modality, length, dna_length))
    if modality == "rna":
        try:
            job.regions = RnaRegions.from_record(record, length)
        except ValueError as error:
            job.regions_problem = str(error)
            log.warning("%s: %s: %s; its figure is drawn unshaded", path, where, error)
    return job


def _run_ism(jobs: list[RecordAttribution], predictor: Predictor, target: Target,
             batch_size: int, progress: bool) -> None:
    alphabet = MUTATION_ALPHABETS[jobs[0].modality]
    total = sum(mutant_count(job.sequence, alphabet, job.span) for job in jobs)
    with record_progress(progress, total, "in-silico mutagenesis") as advance:
        for job in jobs:
            job.ism, job.reference = ism_scores(predictor, job.record, job.modality, target,
                                                job.span, batch_size, advance)
            job.scores = ism_position_scores(job.ism, job.sequence, alphabet)
            log.debug("%s: %d mutants, reference %.4f", job.record_id,
                      mutant_count(job.sequence, alphabet, job.span), job.reference)


def _run_saliency(jobs: list[RecordAttribution], model: IsoFormer, target: Target,
                  batch_size: int, progress: bool) -> None:
    batches = prediction_batches([len(job.sequence) for job in jobs], batch_size)
    with record_progress(progress, len(jobs), "gradient x input") as advance:
        for indices in batches:
            batch = [jobs[i] for i in indices]
            scores, references = saliency_scores(model, [job.record for job in batch],
                                                 batch[0].modality, target)
            for job, values, reference in zip(batch, scores, references):
                values[: job.span[0]] = np.nan
                values[job.span[1] :] = np.nan
                job.scores, job.reference = values, float(reference)
            advance(len(batch))


def _write_outputs(out: Path, jobs: list[RecordAttribution], target: Target,
                   settings: dict[str, Any], summary: AttributionSummary,
                   skipped: list[Skipped], progress: bool) -> None:
    method, modality = settings["method"], settings["modality"]
    arrays: dict[str, np.ndarray] = {
        "record_ids": np.array([job.record_id for job in jobs]),
        "span_starts": np.array([job.span[0] for job in jobs], dtype=np.int64),
        "span_ends": np.array([job.span[1] for job in jobs], dtype=np.int64),
        "reference": np.array([job.reference for job in jobs], dtype=np.float32),
    }
    if method == "ism":
        arrays["alphabet"] = np.array(settings["alphabet"])
    for index, job in enumerate(jobs):
        arrays[f"scores/{index}"] = job.scores
        if job.ism is not None:
            arrays[f"ism/{index}"] = job.ism
    ylabel = "ISM score" if method == "ism" else "gradient x input"
    with atomic_directory(out) as tmp:
        np.savez_compressed(tmp / SCORES_FILE, **arrays)
        with record_progress(progress, len(jobs), "drawing") as advance:
            for job in jobs:
                plot_attribution(
                    job.scores, tmp / figure_name(job.record_id),
                    f"{job.record_id}: {modality} {method}, target {target.label}", job.span,
                    ylabel, regions=job.regions,
                    tss=len(job.sequence) // 2 if modality == "dna" else None)
                advance(1)
        write_json_atomic({
            **settings,
            "n_records": summary.n_records, "n_attributed": summary.n_attributed,
            "skipped": summary.skipped,
            "skipped_records": [vars(entry) for entry in skipped],
            "unshaded_figures": [{"where": job.where, "message": job.regions_problem}
                                 for job in jobs if job.regions_problem],
            "files": {"scores": SCORES_FILE,
                      "figures": [figure_name(job.record_id) for job in jobs]},
            "seconds": round(summary.seconds, 3),  # reading and attributing, not drawing
        }, tmp / SUMMARY_FILE)
