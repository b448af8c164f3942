"""`isoformer predict`: JSON / JSONL records in, one JSONL prediction per record out.

Input records hold `dna_sequence`, `rna_sequence` and optionally `protein_sequence` (absent, null
or "" = non-coding); any other key (transcript_id, id, ...) is carried through. `.json` input is
one object or a list of objects; anything else is read as JSON lines (blank lines skipped).

DNA windows are centred on the TSS (at index len // 2, as `isoformer export` writes them). A window
longer than the run's (e.g. exported from a dataset built at a wider window) is cropped around its
centre, which gives exactly the window at the run's length; how many were cropped is logged once.

Each output line is the record's carried keys plus either `tissues` and `predicted_expression`
(log(1 + TPM), one float per tissue, in `tissues` order) or `error`, a sentence naming the record
(line or list position) and what is wrong: a line that is not JSON, a non-object, a sequence of
the run's modalities that is missing, not a string or holds invalid characters, an empty RNA, or a
DNA window shorter than the run's. Output order is input order; the file is written under a
temporary name and renamed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isoformer.constants import DNA_SEQUENCE, PROTEIN_SEQUENCE, RNA_SEQUENCE, SEQUENCE_KEYS
from isoformer.errors import InputFormatError
from isoformer.files import atomic_output
from isoformer.model.prediction import InferencePrecision, predict_records
from isoformer.training.run import Run

log = logging.getLogger(__name__)

ALPHABETS = {
    DNA_SEQUENCE: frozenset("ACGTN"),
    RNA_SEQUENCE: frozenset("ACGTUN"),
    # ESM-2's residue letters (20 standard + X B U Z O).
    PROTEIN_SEQUENCE: frozenset("LAGVSERTIDPKQNFYMHWCXBUZO"),
}


@dataclass
class InputRecord:
    where: str  # "line 3" (JSONL) or "record 2" (JSON list), 1-based
    record: dict[str, Any] | None  # None when the input could not be parsed
    error: str | None = None


@dataclass
class PredictSummary:
    n_records: int
    n_failed: int
    output: Path


def read_records(path: str | Path) -> list[InputRecord]:
    """Parse `path`; unparsable lines become records with an `error`, never a failed run."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputFormatError(path, f"not valid JSON: {err.msg}", err.lineno) from None
        items = data if isinstance(data, list) else [data]
        return [_as_record(item, f"record {i}") for i, item in enumerate(items, start=1)]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            records.append(
                InputRecord(f"line {number}", None, f"line {number}: not valid JSON ({err.msg})")
            )
            continue
        records.append(_as_record(item, f"line {number}"))
    return records


def _as_record(item: Any, where: str) -> InputRecord:
    if not isinstance(item, dict):
        return InputRecord(
            where, None, f"{where}: expected a JSON object, got {type(item).__name__}"
        )
    return InputRecord(where, item)


def validate_record(record: dict[str, Any], modalities: list[str], dna_length: int) -> str | None:
    """The problem with `record` for a run on `modalities`, or None when it can be predicted."""
    for modality in modalities:
        key = SEQUENCE_KEYS[modality]
        value = record.get(key)
        if value is None and key == PROTEIN_SEQUENCE:
            continue  # absent or null: a non-coding transcript
        if value is None:
            return f"missing {key}"
        if not isinstance(value, str):
            return f"{key} must be a string, got {type(value).__name__}"
        invalid = sorted(set(value.upper()) - ALPHABETS[key])
        if invalid:
            return f"{key} has invalid characters: {''.join(invalid)!r}"
        if key == RNA_SEQUENCE and not value:
            return f"{key} is empty"
        if key == DNA_SEQUENCE and len(value) < dna_length:
            return (
                f"{key} has length {len(value)}, shorter than the run's DNA window of "
                f"{dna_length}; export windows of that length with `isoformer export --run RUN`"
            )
    return None


def _model_input(record: dict[str, Any]) -> dict[str, str]:
    # Upper case: soft-masked (lower-case) genome bases are ordinary bases to the encoders. Keys of
    # modalities the run does not use are passed empty, whatever the record held.
    return {
        key: value.upper() if isinstance(value := record.get(key), str) else ""
        for key in SEQUENCE_KEYS.values()
    }


def _carried(record: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (record or {}).items() if k not in SEQUENCE_KEYS.values()}


def predict_file(
    run: Run | str | Path,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 16,
    device: str = "auto",
    precision: InferencePrecision = "32",
) -> PredictSummary:
    """Predict every record of `input_path` with the run's model on `device` (auto, cpu, cuda,
    cuda:N); write JSONL to `output_path`."""
    run = run if isinstance(run, Run) else Run.open(run)
    output_path = Path(output_path)
    entries = read_records(input_path)
    for entry in entries:
        if entry.error is None:
            problem = validate_record(entry.record, run.modalities, run.dna_length)
            entry.error = None if problem is None else f"{entry.where}: {problem}"
    valid = [entry for entry in entries if entry.error is None]
    log.info("%d records read from %s, %d valid", len(entries), input_path, len(valid))

    predictions = np.zeros((0, len(run.tissues)), dtype=np.float32)
    if valid:
        model = run.load_model(device)
        predictions = predict_records(model, [_model_input(e.record) for e in valid],
                                      batch_size=batch_size, precision=precision)
    by_entry = {
        id(entry): row for entry, row in zip(valid, np.asarray(predictions, dtype=np.float64))
    }

    with atomic_output(output_path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for entry in entries:
            out = _carried(entry.record)
            if entry.error is None:
                out["tissues"] = run.tissues
                out["predicted_expression"] = [float(v) for v in by_entry[id(entry)]]
            else:
                out["error"] = entry.error
            handle.write(json.dumps(out) + "\n")
    n_failed = len(entries) - len(valid)
    if n_failed:
        log.warning(
            "%d of %d records could not be predicted (see their 'error' field)",
            n_failed,
            len(entries),
        )
    return PredictSummary(n_records=len(entries), n_failed=n_failed, output=output_path)
