"""`isoformer predict`: JSON / JSONL records in, one JSONL prediction per record out, streamed.

Input records hold `dna_sequence`, `rna_sequence` and optionally `protein_sequence` (absent, null
or "" = non-coding); any other key (transcript_id, id, ...) is carried through. `.json` input is
one object or a list of objects, the list read item by item (ijson); anything else is read as
JSON lines, line by line (blank lines skipped).

DNA windows are centred on the TSS (at index len // 2, as `isoformer export` writes them). A window
longer than the run's (e.g. exported from a dataset built at a wider window) is cropped around its
centre, which gives exactly the window at the run's length; how many were cropped is logged once.

Each output line is the record's carried keys plus either `tissues` and `predicted_expression`
(log(1 + TPM), one float per tissue, in `tissues` order) or `error`, a sentence naming the record
(line or list position) and what is wrong: a line that is not UTF-8 or not JSON, a non-object, a
sequence of the run's modalities that is missing, not a string or holds invalid characters, an
empty RNA, or a DNA window shorter than the run's. A `.json` list that stops being valid JSON
cannot be read past that point: the run fails, naming the last record read, and writes nothing.

Memory does not grow with the input: records are read into a buffer of `buffer_size` (default
`DEFAULT_BUFFER_BATCHES` batches), validated, sorted by length within it and batched (so padding
stays small), predicted (on one device or replicas on several, `Predictor`), and written out in
input order before the next buffer is read. Output order is input order; the file is written
under a temporary name and renamed.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import ijson
import numpy as np

from isoformer.constants import (
    DNA_SEQUENCE,
    EMBEDDINGS,
    PROTEIN_SEQUENCE,
    RNA_SEQUENCE,
    SEQUENCE_KEYS,
)
from isoformer.encoders.base import log_crops
from isoformer.encoders.embedding_cache import EmbeddingCache
from isoformer.errors import InputFormatError, IsoformerError
from isoformer.files import atomic_output
from isoformer.model.prediction import (
    InferencePrecision,
    Predictor,
    record_progress,
    resolve_devices,
)
from isoformer.training.embed import attach_cached_states, check_cache
from isoformer.training.run import Run

log = logging.getLogger(__name__)

# Records per buffer, in batches: enough for length-sorted batches to pad little and to keep
# several devices busy; at the paper's 196,608-bp window 64 batches of 16 hold ~200 MB of DNA.
DEFAULT_BUFFER_BATCHES = 64

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
    seconds: float  # reading, predicting and writing, the model's loading excluded


def read_records(path: str | Path) -> Iterator[InputRecord]:
    """Stream `path`'s records one by one; unparsable lines become records with an `error`, never
    a failed run. A `.json` file that is not valid JSON raises `InputFormatError` when reading
    reaches the fault."""
    path = Path(path)
    with path.open("rb") as handle:
        yield from _records(path, handle)


def _records(path: Path, handle: IO[bytes]) -> Iterator[InputRecord]:
    if path.suffix.lower() == ".json":
        return _json_records(path, handle)
    return _json_lines_records(handle)


def _json_lines_records(handle: IO[bytes]) -> Iterator[InputRecord]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            item = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            yield InputRecord(where, None, f"{where}: not valid UTF-8")
            continue
        except json.JSONDecodeError as err:
            yield InputRecord(where, None, f"{where}: not valid JSON ({err.msg})")
            continue
        yield _as_record(item, where)


def _json_records(path: Path, handle: IO[bytes]) -> Iterator[InputRecord]:
    while handle.peek(1)[:1].isspace():
        handle.read(1)
    # A list is streamed item by item; anything else is one value, one record.
    prefix = "item" if handle.peek(1)[:1] == b"[" else ""
    count = 0
    try:
        # use_float: numbers as float, not Decimal, so carried keys are written back as JSON.
        for count, item in enumerate(ijson.items(handle, prefix, use_float=True), start=1):
            yield _as_record(item, f"record {count}")
    except (ijson.JSONError, UnicodeDecodeError) as err:
        after = f" after record {count}" if count else ""
        raise InputFormatError(path, f"not valid JSON{after} ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    """ijson's message (bytes or text) without the excerpt of the file that follows it."""
    message = err.args[0] if err.args else ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    lines = str(message).strip().splitlines()
    return lines[0] if lines else type(err).__name__


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


def model_input(record: dict[str, Any]) -> dict[str, str]:
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
    devices: str | Sequence[str] = "auto",
    precision: InferencePrecision = "32",
    buffer_size: int | None = None,
    progress: bool = True,
    cache: str | Path | None = None,
) -> PredictSummary:
    """Predict every record of `input_path` with the run's model; write JSONL to `output_path`.

    `devices`: one device (auto, cpu, cuda, cuda:N) or several (a comma-separated list, a list or
    a count of CUDA devices; see `resolve_devices`), one model replica on each. A k-mer baseline
    predicts on the CPU whatever the devices. `buffer_size`: records read, sorted by length and
    predicted at a time (default: `DEFAULT_BUFFER_BATCHES` batches). `cache`: an `isoformer
    embed` cache of the run's frozen encoders; records whose inputs it holds skip those encoders.
    """
    run = run if isinstance(run, Run) else Run.open(run)
    if batch_size < 1:
        raise IsoformerError(f"batch_size must be at least 1 (got {batch_size})")
    buffer_size = DEFAULT_BUFFER_BATCHES * batch_size if buffer_size is None else buffer_size
    if buffer_size < 1:
        raise IsoformerError(f"buffer_size must be at least 1 (got {buffer_size})")
    input_path, output_path = Path(input_path), Path(output_path)
    with input_path.open("rb") as source:  # opened first: a missing input fails before loading
        if run.is_baseline:
            models = [run.load_model()]
        else:
            replicas = resolve_devices(devices)
            models = [run.load_model(str(device)) for device in replicas]
            log.info("predicting on %s", ", ".join(map(str, replicas)))
        embedding_cache = None
        if cache is not None:
            if run.is_baseline:
                raise IsoformerError(f"{run.directory}: a baseline run reads no embedding cache")
            embedding_cache = EmbeddingCache.open(cache)
            check_cache(embedding_cache, models[0], None)
        summary = _predict_stream(run, Predictor(models, precision), _records(input_path, source),
                                  output_path, batch_size, buffer_size, progress,
                                  embedding_cache)
    log.info(
        "%d records from %s predicted in %.1f s (%d failed, %.1f records/s); written to %s",
        summary.n_records, input_path, summary.seconds, summary.n_failed,
        summary.n_records / max(summary.seconds, 1e-9), output_path,
    )
    if summary.n_failed:
        log.warning(
            "%d of %d records could not be predicted (see their 'error' field)",
            summary.n_failed,
            summary.n_records,
        )
    return summary


def _predict_stream(run: Run, predictor: Predictor, entries: Iterator[InputRecord],
                    output_path: Path, batch_size: int, buffer_size: int, progress: bool,
                    cache: EmbeddingCache | None = None) -> PredictSummary:
    """Buffer by buffer: predict `entries`, write them to `output_path` (atomically)."""
    start = time.perf_counter()
    n_records = n_failed = 0
    with (
        atomic_output(output_path) as tmp,
        tmp.open("w", encoding="utf-8") as handle,
        record_progress(progress, description="predicting") as advance,
    ):
        while buffer := list(itertools.islice(entries, buffer_size)):
            n_failed += _predict_buffer(buffer, run, predictor, batch_size, handle, advance,
                                        cache)
            n_records += len(buffer)
    log_crops(predictor.crops(), f"predicting {n_records} records")
    return PredictSummary(n_records=n_records, n_failed=n_failed, output=output_path,
                          seconds=time.perf_counter() - start)


def _predict_buffer(
    entries: list[InputRecord],
    run: Run,
    predictor: Predictor,
    batch_size: int,
    handle: IO[str],
    advance: Callable[[int], None],
    cache: EmbeddingCache | None = None,
) -> int:
    """Validate, predict and write one buffer of records in input order; the number that
    failed."""
    for entry in entries:
        if entry.error is None:
            problem = validate_record(entry.record, run.modalities, run.dna_length)
            entry.error = None if problem is None else f"{entry.where}: {problem}"
    valid = [entry for entry in entries if entry.error is None]
    # The predictor sorts the buffer's records by length into batches; rows come back in input
    # order.
    inputs = [model_input(e.record) for e in valid]
    if cache is None:
        predictions = predictor.predict(inputs, batch_size, advance=advance)
    else:
        predictions = _predict_with_cache(inputs, cache, predictor, batch_size, advance)
    advance(len(entries) - len(valid))
    rows = iter(predictions.astype("float64").tolist())
    tissues = run.tissues
    for entry in entries:
        out = _carried(entry.record)
        if entry.error is None:
            out["tissues"] = tissues
            out["predicted_expression"] = next(rows)
        else:
            out["error"] = entry.error
        handle.write(json.dumps(out) + "\n")
    return len(entries) - len(valid)


def _predict_with_cache(inputs: list[dict[str, Any]], cache: EmbeddingCache,
                        predictor: Predictor, batch_size: int,
                        advance: Callable[[int], None]) -> np.ndarray:
    """Records found in the cache and the others predicted apart (a batch is either cached or
    encoded), the rows put back in input order."""
    attach_cached_states(inputs, cache)
    predictions = np.zeros((len(inputs), len(predictor.models[0].tissues)), dtype=np.float32)
    for cached in (True, False):
        rows = [i for i, record in enumerate(inputs) if (EMBEDDINGS in record) == cached]
        if rows:
            predictions[rows] = predictor.predict([inputs[i] for i in rows], batch_size,
                                                  advance=advance)
    return predictions
