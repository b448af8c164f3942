"""`isoformer import-instadeep`: InstaDeep's published GTEx_final.csv -> the dataset format.

Its column names are unconfirmed, so they are read through a mapping (ours -> theirs) that the
user can override (`--column transcript_id=transcript_id_gtex`); a missing column fails with the
list of columns found. Conventions chosen here (also unconfirmed upstream):
- `start`/`end` are 1-based closed, as in the GENCODE annotation the CSV derives from, so the
  0-based span is `[start - 1, end)` and the TSS is `start - 1` on "+" and `end - 1` on "-".
- `chr` may be `1` or `chr1` (`MT` <-> `chrM`): matched against the FASTA names; DNA windows
  are read from the FASTA at load time like any dataset.
- `strand` is `+`/`-` or `1`/`-1`; `split` values train / test / valid (or validation, val,
  eval, evaluation).
- `5UTR`, `CDS`, `3UTR` may hold sequences or lengths (an empty cell is length 0); an empty CDS
  of a transcript with a protein is what the UTRs leave of the RNA. Without UTR columns all
  three lengths are 0 (counted as utr_lengths_unknown).
- Targets are copied as they are (the CSV may hold standardised values); empty cells are NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from isoformer.constants import DEFAULT_DNA_LENGTH, TISSUES
from isoformer.data.build import (
    base_metadata,
    check_output_dir,
    describe_file,
    make_table,
    write_dataset,
)
from isoformer.data.genome import Genome, mask_non_acgtn
from isoformer.data.schema import TRANSCRIPT_COLUMNS
from isoformer.errors import InputFormatError, IsoformerError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: dict[str, str] = {
    "transcript_id": "transcript_id_gtex",
    "gene_id": "gene_id_gtex",
    "split": "split",
    "chrom": "chr",
    "strand": "strand",
    "start": "start",
    "end": "end",
    "rna": "RNA",
    "protein": "Protein",
    **{tissue: tissue for tissue in TISSUES},
}
OPTIONAL_COLUMNS: dict[str, str] = {
    "utr5": "5UTR",
    "cds": "CDS",
    "utr3": "3UTR",
    "gene_name": "gene_name",
    "transcript_type": "transcript_type",
}
SPLIT_NAMES = {
    "train": "train",
    "test": "test",
    "valid": "valid",
    "validation": "valid",
    "val": "valid",
    "eval": "valid",
    "evaluation": "valid",
}
STRANDS = {"+": "+", "-": "-", "1": "+", "+1": "+", "-1": "-"}


def parse_column_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """["ours=theirs", ...] -> {ours: theirs}; ours must be a known field or tissue."""
    known = {**REQUIRED_COLUMNS, **OPTIONAL_COLUMNS}
    overrides: dict[str, str] = {}
    for pair in pairs:
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours or not theirs:
            raise IsoformerError(f"--column {pair!r}: expected OURS=THEIRS")
        if ours not in known:
            raise IsoformerError(f"--column {pair!r}: {ours!r} is not one of {', '.join(known)}")
        overrides[ours] = theirs
    return overrides


def import_instadeep(
    csv: str | Path,
    fasta: str | Path,
    out: str | Path,
    columns: dict[str, str] | None = None,
    dna_length: int = DEFAULT_DNA_LENGTH,
) -> int:
    """Convert the CSV into `out` (transcripts.parquet + metadata.json); returns rows written."""
    csv, fasta, out = Path(csv), Path(fasta), Path(out)
    check_output_dir(out)
    for path in (csv, fasta):
        if not path.is_file():
            raise InputFormatError(path, "file not found")
    mapping = {**REQUIRED_COLUMNS, **OPTIONAL_COLUMNS, **(columns or {})}
    try:
        frame = pl.read_csv(csv, infer_schema=False)  # all columns as strings; empty -> null
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputFormatError(csv, f"not a readable CSV ({err})") from None
    missing = [
        f"{ours} -> {mapping[ours]!r}"
        for ours in REQUIRED_COLUMNS
        if mapping[ours] not in frame.columns
    ]
    if missing:
        raise InputFormatError(
            csv,
            f"missing columns ({'; '.join(missing)}); columns found: {', '.join(frame.columns)}; "
            "map them with --column OURS=THEIRS",
        )
    present = {ours for ours in OPTIONAL_COLUMNS if mapping[ours] in frame.columns}
    tissues = list(TISSUES)

    # Every table column but the split, which the CSV gives per row (collected in `splits`).
    rows: dict[str, list[Any]] = {c: [] for c in TRANSCRIPT_COLUMNS if c != "split"}
    splits: list[str] = []
    counts = {"non_acgtn_bases": 0, "missing_targets": 0, "utr_lengths_unknown": 0}
    targets = np.empty((frame.height, len(tissues)), dtype=np.float32)
    seen: set[str] = set()
    with Genome(fasta) as genome:
        chrom_names = _chrom_names(csv, genome, frame[mapping["chrom"]].unique().to_list())
        for index, record in enumerate(frame.iter_rows(named=True)):
            line = index + 2  # header is line 1; the CSV holds no multi-line fields

            def get(ours: str) -> str:
                return (record[mapping[ours]] or "").strip()

            def fail(problem: str) -> InputFormatError:
                return InputFormatError(csv, problem, line)

            transcript_id = get("transcript_id")
            if not transcript_id or transcript_id in seen:
                raise fail(f"transcript id {transcript_id!r} is empty or repeated")
            seen.add(transcript_id)
            strand = STRANDS.get(get("strand"))
            split = SPLIT_NAMES.get(get("split").lower())
            if strand is None or split is None:
                raise fail(f"unknown strand {get('strand')!r} or split {get('split')!r}")
            try:
                start, end = int(float(get("start"))) - 1, int(float(get("end")))
            except ValueError:
                raise fail(f"start/end {get('start')!r}/{get('end')!r} are not integers") from None
            chrom = chrom_names.get(get("chrom"))
            if chrom is None:
                raise fail("empty chromosome")
            if not 0 <= start < end <= genome.chrom_length(chrom):
                raise fail(f"span {start + 1}..{end} is not within {chrom} of {fasta}")
            rna, non_acgtn = mask_non_acgtn(get("rna").upper().replace("U", "T"))
            counts["non_acgtn_bases"] += non_acgtn
            protein = get("protein").upper().rstrip("*")
            if "utr5" in present and "utr3" in present:
                utr5, utr3 = _length(get("utr5")), _length(get("utr3"))
                cds_text = get("cds") if "cds" in present else ""
                cds = _length(cds_text) if cds_text else len(rna) - utr5 - utr3 if protein else 0
            else:
                counts["utr_lengths_unknown"] += 1
                utr5 = cds = utr3 = 0
            for t, tissue in enumerate(tissues):
                text = get(tissue)
                try:
                    targets[index, t] = float(text) if text else math.nan
                except ValueError:
                    raise fail(f"{mapping[tissue]}: target {text[:20]!r} is not a number") from None
                counts["missing_targets"] += not text
            for column, value in (
                ("transcript_id", transcript_id),
                ("gene_id", get("gene_id")),
                ("gene_name", get("gene_name") if "gene_name" in present else ""),
                ("transcript_type", get("transcript_type") if "transcript_type" in present else ""),
                ("chrom", chrom),
                ("strand", strand),
                ("start", start),
                ("end", end),
                ("tss", start if strand == "+" else end - 1),
                ("rna", rna),
                ("protein", protein),
                ("utr5_length", utr5),
                ("cds_length", cds),
                ("utr3_length", utr3),
            ):
                rows[column].append(value)
            splits.append(split)

    table = make_table(rows, splits, tissues, targets)
    genes_in_several = (
        table.group_by("gene_id").agg(pl.col("split").n_unique()).filter(pl.col("split") > 1).height
    )
    if genes_in_several:
        log.warning("%s: %d genes have isoforms in several splits", csv, genes_in_several)
    metadata = {
        **base_metadata(tissues, dna_length, fasta),
        "source": "instadeep",
        "inputs": {"csv": describe_file(csv), "fasta": describe_file(fasta)},
        "column_mapping": {ours: mapping[ours] for ours in [*REQUIRED_COLUMNS, *sorted(present)]},
        "coordinates": "CSV start/end read as 1-based closed",
        "split": {
            "method": "from csv",
            "transcripts": dict(table["split"].value_counts().iter_rows()),
            "genes_in_several_splits": genes_in_several,
        },
        "counts": {"kept": table.height, "dropped": {}, **counts},
    }
    write_dataset(table, metadata, out)
    log.info(
        "%s: %d transcripts imported from %s (%s)",
        out,
        table.height,
        csv,
        ", ".join(f"{k} {v}" for k, v in counts.items()),
    )
    return table.height


def _chrom_names(csv: Path, genome: Genome, names: list[str | None]) -> dict[str, str]:
    """CSV chromosome name -> FASTA sequence name, trying `chr` added or removed and M <-> MT."""
    resolved: dict[str, str] = {}
    for name in {n.strip() for n in names if n and n.strip()}:
        bare = name.removeprefix("chr")
        candidates = [name, f"chr{bare}", bare]
        if bare in ("M", "MT"):
            candidates += ["chrM", "MT", "M"]
        found = next((c for c in candidates if genome.has(c)), None)
        if found is None:
            raise InputFormatError(
                csv,
                f"chromosome {name!r} is not in FASTA {genome.path} (it has "
                f"{', '.join(genome.chroms[:10])}{'...' if len(genome.chroms) > 10 else ''})",
            )
        resolved[name] = found
    return resolved


def _length(value: str) -> int:
    """A region given as a length (digits) or as its sequence (empty: none)."""
    return int(value) if value.isdigit() else len(value)
