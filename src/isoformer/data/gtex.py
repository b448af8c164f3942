"""GTEx expression: sample -> tissue map and the streamed transcript TPM GCT -> log(1 + mean TPM).

The GCT (GTEx ships `#1.2`, a `<rows>\\t<samples>` line, a header
`transcript_id\\tgene_id\\t<SAMPID>...`
and one row of TPM per transcript; the standard GCT header `Name\\tDescription` is accepted too) is
several GB uncompressed, so it is read in blocks of lines, the next one read (and inflated) on a
thread while this one is parsed: the TPM fields of a block become one column that polars parses
(fast, and with one column no per-sample overhead, which matters at 17k samples), and each
tissue's columns are summed, so memory is two blocks plus [transcripts, tissues], never
transcripts x samples.
Hand-rolled around polars because no reader streams a GCT with file:line errors.

Tissues with no samples in the GCT get NaN targets and a warning (counted in the result, never
dropped); samples of tissues outside the requested set are ignored and counted.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import polars as pl
import rich.progress

from isoformer.errors import InputFormatError

log = logging.getLogger(__name__)

GCT_VERSION = "#1.2"
GCT_ID_COLUMNS = (("transcript_id", "gene_id"), ("Name", "Description"))
FIRST_DATA_LINE = 4  # 1-based: version, dimensions, header, then rows
BLOCK_BYTES = 1 << 21  # 2 MB of text per block: measured as fast as 16 MB, at a third of the memory
TAB = ord("\t")
TABS_TO_NEWLINES = bytes.maketrans(b"\t", b"\n")


@dataclass
class TissueExpression:
    """Per transcript and tissue, log(1 + mean TPM over the tissue's samples)."""

    transcript_ids: list[str]  # GCT order
    # float32 [n_transcripts, n_tissues]; NaN columns for tissues without samples
    values: np.ndarray
    tissues: list[str]
    samples_per_tissue: dict[str, int]  # requested tissues, 0 for those without samples
    ignored_samples: dict[str, int]  # tissue outside the requested set -> GCT samples ignored

    @property
    def tissues_without_samples(self) -> list[str]:
        return [tissue for tissue, n in self.samples_per_tissue.items() if n == 0]


@contextmanager
def open_binary(path: Path) -> Iterator[BinaryIO]:
    """A plain or gzipped file (detected by its magic bytes, not its name) as a binary stream."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        yield gzip.GzipFile(fileobj=raw) if gzipped else io.BufferedReader(raw)  # type: ignore[misc]


def read_sample_tissues(path: str | Path) -> dict[str, str]:
    """SAMPID -> SMTS from a GTEx sample attributes file (tab-separated, header naming both).

    Columns beyond SAMPID and SMTS are ignored; an empty SMTS reads as tissue "". Raises
    InputFormatError for a missing column, a row too short to hold both, or a sample listed twice
    with different tissues.
    """
    path = Path(path)
    tissues: dict[str, str] = {}
    try:
        with open_binary(path) as stream:
            lines = io.TextIOWrapper(stream, encoding="utf-8")
            header = lines.readline().rstrip("\r\n").split("\t")
            missing = [name for name in ("SAMPID", "SMTS") if name not in header]
            if missing:
                raise InputFormatError(
                    path,
                    f"header lacks {', '.join(missing)} (columns found: {', '.join(header)[:300]})",
                    1,
                )
            sample_col, tissue_col = header.index("SAMPID"), header.index("SMTS")
            needed = max(sample_col, tissue_col) + 1
            for number, line in enumerate(lines, start=2):
                fields = line.rstrip("\r\n").split("\t")
                if fields == [""]:
                    continue
                if len(fields) < needed:
                    raise InputFormatError(
                        path, f"{len(fields)} fields, too few to hold SAMPID and SMTS", number
                    )
                sample, tissue = fields[sample_col], fields[tissue_col].strip()
                if not sample:
                    raise InputFormatError(path, "empty SAMPID", number)
                if tissues.setdefault(sample, tissue) != tissue:
                    raise InputFormatError(
                        path,
                        f"sample {sample} listed again with tissue {tissue!r} "
                        f"(was {tissues[sample]!r})",
                        number,
                    )
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise InputFormatError(path, f"not a readable sample attributes file ({err})") from None
    log.info("%s: %d samples in %d tissues", path, len(tissues), len(set(tissues.values())))
    return tissues


def read_tissue_expression(
    path: str | Path,
    sample_tissues: dict[str, str],
    tissues: Sequence[str],
    progress: bool = True,
    block_bytes: int = BLOCK_BYTES,
    samples_path: str | Path = "<sample attributes>",
) -> TissueExpression:
    """Stream a GTEx transcript TPM GCT (plain or gzipped) into log(1 + mean TPM) per tissue.

    Raises InputFormatError (file, line, problem) for a missing or garbled `#1.2` or dimensions
    line, a header whose sample count differs from the dimensions or that repeats a sample, a GCT
    sample absent from `sample_tissues` (named by `samples_path`), a row with the wrong number of
    columns, an empty, non-numeric, negative, NaN or infinite TPM, a transcript listed twice, and
    a file with fewer or more rows than its dimensions line (truncated gzip included).
    """
    path = Path(path)
    tissues = list(tissues)
    try:
        with open_binary(path) as stream:
            n_rows, n_samples = _read_preamble(path, stream)
            samples = _read_header(path, stream, n_samples)
            columns, samples_per_tissue, ignored = _tissue_columns(
                path, samples, sample_tissues, tissues, samples_path
            )
            ids, sums = _stream_rows(
                path, stream, n_rows, n_samples, columns, progress, block_bytes
            )
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise InputFormatError(path, f"truncated or corrupt gzip stream ({err})") from None

    counts = np.array([samples_per_tissue[t] for t in tissues], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts  # [N, T]; 0/0 -> NaN for tissues without samples
    values = np.log1p(means).astype(np.float32)
    result = TissueExpression(ids, values, tissues, samples_per_tissue, ignored)
    log.info(
        "%s: %d transcripts x %d samples -> %d tissues (%d samples of %d other tissues ignored)",
        path, len(ids), n_samples, len(tissues), sum(ignored.values()), len(ignored),
    )
    if result.tissues_without_samples:
        log.warning(
            "%s: no samples for tissues %s: their targets are NaN",
            path, ", ".join(result.tissues_without_samples),
        )
    return result


def _read_preamble(path: Path, stream: BinaryIO) -> tuple[int, int]:
    version = stream.readline().decode("utf-8", "replace").strip()
    if version != GCT_VERSION:
        raise InputFormatError(
            path, f"expected {GCT_VERSION!r} (a GCT file), found {version[:40]!r}", 1
        )
    dims = stream.readline().decode("utf-8", "replace").split()
    try:
        n_rows, n_samples = (int(x) for x in dims)
    except ValueError:
        n_rows = n_samples = -1
    if len(dims) != 2 or n_rows < 0 or n_samples < 1:
        raise InputFormatError(
            path, f"expected '<rows><TAB><samples>' dimensions, found {' '.join(dims)[:40]!r}", 2
        )
    return n_rows, n_samples


def _read_header(path: Path, stream: BinaryIO, n_samples: int) -> list[str]:
    header = stream.readline().decode("utf-8", "replace").rstrip("\r\n").split("\t")
    if tuple(header[:2]) not in GCT_ID_COLUMNS:
        expected = " or ".join("<TAB>".join(pair) for pair in GCT_ID_COLUMNS)
        raise InputFormatError(
            path, f"header must start with {expected}, found {'<TAB>'.join(header[:2])[:60]!r}", 3
        )
    samples = header[2:]
    if len(samples) != n_samples:
        raise InputFormatError(
            path, f"header names {len(samples)} samples but the dimensions line says {n_samples}", 3
        )
    repeated = [sample for sample, n in Counter(samples).items() if n > 1]
    if repeated:
        raise InputFormatError(path, f"header repeats sample ids: {', '.join(repeated[:5])}", 3)
    return samples


def _tissue_columns(
    path: Path,
    samples: list[str],
    sample_tissues: dict[str, str],
    tissues: list[str],
    samples_path: str | Path,
) -> tuple[list[np.ndarray], dict[str, int], dict[str, int]]:
    """Sample columns of each requested tissue, samples per requested tissue, ignored samples."""
    unknown = [sample for sample in samples if sample not in sample_tissues]
    if unknown:
        raise InputFormatError(
            samples_path,
            f"{len(unknown)} samples of {path} are missing from this file, e.g. "
            f"{', '.join(unknown[:3])}",
        )
    members: dict[str, list[int]] = {tissue: [] for tissue in tissues}
    ignored: Counter[str] = Counter()
    for s, sample in enumerate(samples):
        tissue = sample_tissues[sample]
        if tissue in members:
            members[tissue].append(s)
        else:
            ignored[tissue or "(no SMTS)"] += 1
    columns = [np.array(members[tissue], dtype=np.intp) for tissue in tissues]
    return columns, {tissue: len(members[tissue]) for tissue in tissues}, dict(ignored)


def _stream_rows(
    path: Path,
    stream: BinaryIO,
    n_rows: int,
    n_samples: int,
    columns: list[np.ndarray],
    progress: bool,
    block_bytes: int,
) -> tuple[list[str], np.ndarray]:
    """Transcript ids and per-tissue TPM sums [N, T] of every data row."""
    ids: list[str] = []
    seen: dict[str, int] = {}
    sums: list[np.ndarray] = []
    next_line = FIRST_DATA_LINE
    with (
        rich.progress.Progress(
            *rich.progress.Progress.get_default_columns(),
            rich.progress.MofNCompleteColumn(),
            disable=not progress,
            transient=True,
        ) as bar,
        # The next block is read on a thread (zlib inflates without the GIL) while we parse.
        ThreadPoolExecutor(max_workers=1) as reader,
    ):
        task = bar.add_task(f"reading {path.name}", total=n_rows)
        ahead = reader.submit(_read_block, stream, block_bytes, n_samples)
        while (block := ahead.result()).lines:
            ahead = reader.submit(_read_block, stream, block_bytes, n_samples)
            lines = block.lines
            if len(ids) + len(lines) > n_rows:
                raise InputFormatError(
                    path, f"more data rows than the {n_rows} of the dimensions line",
                    FIRST_DATA_LINE + n_rows,
                )
            text = block.tpm_text
            tpm = None if text is None else _parse_tpm(text, len(lines), n_samples)
            if tpm is None:
                for offset, line in enumerate(lines):
                    _raise_row_error(path, line, next_line + offset, n_samples)
                raise InputFormatError(path, f"unreadable block of rows from line {next_line}")
            for offset, raw_id in enumerate(block.ids):
                transcript_id = raw_id.decode("utf-8", "replace")
                if transcript_id in seen:
                    raise InputFormatError(
                        path,
                        f"transcript {transcript_id} listed twice "
                        f"(first at line {seen[transcript_id]})",
                        next_line + offset,
                    )
                seen[transcript_id] = next_line + offset
                ids.append(transcript_id)
            # Per-tissue sums of columns, not a product with 0/1 weights: BLAS threads spin
            # between the many small products and starve the inflating thread of its core.
            sums.append(np.stack([tpm[:, cols].sum(axis=1) for cols in columns], axis=1))
            next_line += len(lines)
            bar.update(task, advance=len(lines))
    if len(ids) < n_rows:
        raise InputFormatError(
            path, f"truncated: {len(ids)} data rows, the dimensions line says {n_rows}", next_line
        )
    return ids, np.concatenate(sums) if sums else np.zeros((0, len(columns)))


class _Block(NamedTuple):
    lines: list[bytes]  # raw, for the precise error of a malformed row
    ids: list[bytes]
    tpm_text: bytes | None  # one TPM per line; None when some row is malformed


def _read_block(stream: BinaryIO, block_bytes: int, n_samples: int) -> _Block:
    """The next block of rows, its TPM fields as one column of text for polars to parse.

    One column has no per-sample overhead (17k samples), and the text is built with bytes
    operations on whole lines, no per-field Python. Runs on the reader thread.
    """
    lines = stream.readlines(block_bytes)
    fields = [line.split(b"\t", 2) for line in lines]  # id, gene, TPMs
    ids = [field[0] for field in fields]
    for line in lines:  # numpy counts the tabs of a long line ~10x faster than bytes.count
        if np.count_nonzero(np.frombuffer(line, np.uint8) == TAB) != n_samples + 1:
            return _Block(lines, ids, None)
    if not all(ids):
        return _Block(lines, ids, None)
    text = b"".join(field[2] for field in fields).translate(TABS_TO_NEWLINES)
    return _Block(lines, ids, text if text.endswith(b"\n") else text + b"\n")  # last line


def _parse_tpm(text: bytes, n_rows: int, n_samples: int) -> np.ndarray | None:
    """TPMs [rows, S] of a block's text, or None when one is not a finite number >= 0."""
    try:
        column = pl.read_csv(  # no tab is left in the text, so none can split a field
            text, has_header=False, schema={"tpm": pl.Float64}, separator="\t", quote_char=None
        )["tpm"]
        tpm = column.to_numpy().reshape(n_rows, n_samples)  # empty field: NaN, or dropped at end
    except (pl.exceptions.PolarsError, ValueError):
        return None
    return tpm if tpm.min() >= 0 and tpm.max() < math.inf else None  # NaN fails both


def _raise_row_error(path: Path, raw: bytes, number: int, n_samples: int) -> None:
    """Raise the precise error of one data row, or return when the row is well formed."""
    fields = raw.decode("utf-8", "replace").rstrip("\r\n").split("\t")
    if len(fields) != n_samples + 2:
        raise InputFormatError(
            path, f"expected {n_samples + 2} tab-separated columns, found {len(fields)}", number
        )
    if not fields[0]:
        raise InputFormatError(path, "empty transcript id", number)
    for column, text in enumerate(fields[2:], start=3):
        try:
            value = float(text)
        except ValueError:
            raise InputFormatError(
                path, f"column {column}: TPM {text[:20]!r} is not a number", number
            ) from None
        if not math.isfinite(value) or value < 0:
            raise InputFormatError(
                path, f"column {column}: TPM {text[:20]!r} is not a finite value >= 0", number
            )
