"""`isoformer build`: genome FASTA + GENCODE GTF + GTEx TPM GCT + sample attributes -> dataset.

One row per transcript present in both the GTF and the GCT (schema in isoformer.data.schema).
What is left out is counted by reason in metadata.json and logged, never dropped silently:
`gct_not_in_gtf`, `gtf_not_in_gct`, `non_coding` (with --protein-coding-only) and
`unusable_cds_<reason>` (CDS that cannot be translated, see gencode.UnusableCdsError). Anything
else wrong with an input is an error, and no dataset directory is left behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import rich.progress

from isoformer import __version__
from isoformer.constants import DEFAULT_DNA_LENGTH, SPLITS, TISSUES
from isoformer.data.gencode import UnusableCdsError, read_gtf, transcript_sequences
from isoformer.data.genome import Genome
from isoformer.data.gtex import read_sample_tissues, read_tissue_expression
from isoformer.data.schema import (
    METADATA_FILE,
    STRUCTURE_COLUMNS,
    TRANSCRIPT_COLUMNS,
    TRANSCRIPTS_FILE,
)
from isoformer.data.splits import (
    SPLIT_METHODS,
    assign_chromosome_splits,
    assign_splits,
    check_chromosomes_present,
    chromosomes_by_split,
    resolve_chromosome_lists,
)
from isoformer.errors import InputFormatError, IsoformerError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class BuildReport:
    out: Path
    kept: int
    dropped: dict[str, int]  # reason -> transcripts
    split_transcripts: dict[str, int]
    split_genes: dict[str, int]
    non_acgtn_bases: int  # IUPAC bases of kept RNAs now read N
    transcripts_with_non_acgtn: int
    tissues_without_samples: list[str] = field(default_factory=list)
    ignored_samples: dict[str, int] = field(default_factory=dict)  # other tissue -> samples


def build_dataset(
    fasta: str | Path,
    gtf: str | Path,
    tpm: str | Path,
    samples: str | Path,
    out: str | Path,
    tissues: Sequence[str] | None = None,
    dna_length: int = DEFAULT_DNA_LENGTH,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = 0,
    protein_coding_only: bool = False,
    progress: bool = True,
    split: str = "gene",
    test_chromosomes: Sequence[str] | None = None,
    valid_chromosomes: Sequence[str] | None = None,
) -> BuildReport:
    """Build `out/transcripts.parquet` + `out/metadata.json`; refuses a non-empty `out`.

    `split`: "gene" (val_fraction / test_fraction of the genes, by `seed`) or "chromosome" (whole
    chromosomes held out, see `isoformer.data.splits`: `test_chromosomes`, `valid_chromosomes`,
    GenBio's chr20 / chr21 + chr22 when neither is named; without valid chromosomes, val_fraction
    of the other chromosomes' genes).
    """
    fasta, gtf, tpm, samples, out = (Path(p) for p in (fasta, gtf, tpm, samples, out))
    tissues = check_tissues(tissues)
    chromosome_lists = check_split_options(split, test_chromosomes, valid_chromosomes)
    if dna_length < 1:
        raise IsoformerError(f"--dna-length must be positive, got {dna_length}")
    check_output_dir(out)
    for path in (fasta, gtf, tpm, samples):
        if not path.is_file():
            raise InputFormatError(path, "file not found")

    sample_tissues = read_sample_tissues(samples)
    annotation = read_gtf(gtf, progress=progress)
    if chromosome_lists is not None:  # before the GCT, the long read
        gtf_chromosomes = {tx.chrom for tx in annotation.transcripts.values()}
        for option, names in zip(("--test-chromosomes", "--valid-chromosomes"), chromosome_lists):
            check_chromosomes_present(names or [], gtf_chromosomes, option, f"{gtf.name}")
    expression = read_tissue_expression(
        tpm, sample_tissues, tissues, progress=progress, samples_path=samples
    )

    in_gct = {tid: row for row, tid in enumerate(expression.transcript_ids)}
    dropped: Counter[str] = Counter()
    dropped["gct_not_in_gtf"] = sum(tid not in annotation.transcripts for tid in in_gct)
    dropped["gtf_not_in_gct"] = sum(tid not in in_gct for tid in annotation.transcripts)
    if dropped["gct_not_in_gtf"] == len(in_gct) and in_gct:
        raise IsoformerError(
            f"no transcript of {tpm} is in {gtf} (e.g. {expression.transcript_ids[0]} vs "
            f"{next(iter(annotation.transcripts), 'none')}): are they the same GENCODE release?"
        )

    rows: dict[str, list[Any]] = {
        column: [] for column in (*TRANSCRIPT_COLUMNS, *STRUCTURE_COLUMNS) if column != "split"
    }
    target_rows: list[int] = []
    non_acgtn = transcripts_with_non_acgtn = 0
    shared = [tx for tid, tx in annotation.transcripts.items() if tid in in_gct]
    with Genome(fasta) as genome:
        for tx in rich.progress.track(
            shared, description="extracting sequences", disable=not progress, transient=True
        ):
            if protein_coding_only and tx.transcript_type != "protein_coding":
                dropped["non_coding"] += 1
                continue
            try:
                seqs = transcript_sequences(tx, genome, gtf)
            except UnusableCdsError as err:
                dropped[f"unusable_cds_{err.reason}"] += 1
                log.debug("dropped: %s", err)
                continue
            non_acgtn += seqs.non_acgtn
            transcripts_with_non_acgtn += seqs.non_acgtn > 0
            for column, value in (
                ("transcript_id", tx.transcript_id),
                ("gene_id", tx.gene_id),
                ("gene_name", tx.gene_name),
                ("transcript_type", tx.transcript_type),
                ("chrom", tx.chrom),
                ("strand", tx.strand),
                ("start", tx.start),
                ("end", tx.end),
                ("tss", tx.tss),
                ("rna", seqs.rna),
                ("protein", seqs.protein),
                ("utr5_length", seqs.utr5_length),
                ("cds_length", seqs.cds_length),
                ("utr3_length", seqs.utr3_length),
                ("exon_starts", [start for start, _ in tx.exons]),
                ("exon_ends", [end for _, end in tx.exons]),
                ("cds_phase", seqs.cds_phase),
            ):
                rows[column].append(value)
            target_rows.append(in_gct[tx.transcript_id])
    if not target_rows:
        raise IsoformerError(f"no transcript left to write (dropped: {_format_counts(dropped)})")

    if chromosome_lists is None:
        splits = assign_splits(rows["gene_id"], val_fraction, test_fraction, seed)
    else:
        splits = assign_chromosome_splits(rows["gene_id"], rows["chrom"], *chromosome_lists,
                                          val_fraction=val_fraction, seed=seed)
    if "train" not in splits:
        raise IsoformerError(
            f"the split leaves no transcript to train on ({len(splits)} transcripts of "
            f"{len(set(rows['gene_id']))} genes); lower --val-fraction / --test-fraction"
        )
    table = make_table(rows, splits, tissues, expression.values[target_rows])
    report = BuildReport(
        out=out,
        kept=table.height,
        dropped=dict(dropped),
        split_transcripts=_count_by_split(table),
        split_genes=_count_by_split(table.unique("gene_id")),
        non_acgtn_bases=non_acgtn,
        transcripts_with_non_acgtn=transcripts_with_non_acgtn,
        tissues_without_samples=expression.tissues_without_samples,
        ignored_samples=expression.ignored_samples,
    )
    metadata = {
        **base_metadata(tissues, dna_length, fasta),
        "inputs": {
            role: describe_file(p)
            for role, p in (("fasta", fasta), ("gtf", gtf), ("tpm", tpm), ("samples", samples))
        },
        "protein_coding_only": protein_coding_only,
        "split": {
            **split_metadata(split, chromosome_lists, val_fraction, test_fraction, seed),
            "transcripts": report.split_transcripts,
            "genes": report.split_genes,
            "chromosomes": chromosomes_by_split(rows["chrom"], splits),
        },
        "samples_per_tissue": expression.samples_per_tissue,
        "counts": {
            "kept": report.kept,
            "dropped": report.dropped,
            "non_acgtn_bases": non_acgtn,
            "transcripts_with_non_acgtn": transcripts_with_non_acgtn,
            "tissues_without_samples": report.tissues_without_samples,
            "ignored_samples_by_tissue": report.ignored_samples,
            "gtf": annotation.counts,
        },
    }
    write_dataset(table, metadata, out)
    log.info(
        "%s: %d transcripts kept (train/valid/test %s, split by %s), dropped: %s; %d non-ACGTN "
        "bases read N; %d samples of other tissues ignored%s",
        out,
        report.kept,
        "/".join(str(report.split_transcripts[s]) for s in SPLITS),
        split,
        _format_counts(dropped),
        non_acgtn,
        sum(report.ignored_samples.values()),
        f"; NaN targets for tissues without samples: {', '.join(report.tissues_without_samples)}"
        if report.tissues_without_samples
        else "",
    )
    return report


def check_split_options(
    split: str, test_chromosomes: Sequence[str] | None, valid_chromosomes: Sequence[str] | None
) -> tuple[list[str], list[str] | None] | None:
    """The chromosome lists of a chromosome split (see `resolve_chromosome_lists`); None for the
    gene split, which takes no chromosome list."""
    if split not in SPLIT_METHODS:
        raise IsoformerError(f"--split {split!r}: choose one of {', '.join(SPLIT_METHODS)}")
    if split == "gene":
        named = [option for option, names in (("--test-chromosomes", test_chromosomes),
                                              ("--valid-chromosomes", valid_chromosomes))
                 if names is not None]
        if named:
            raise IsoformerError(f"{' and '.join(named)} need --split chromosome")
        return None
    return resolve_chromosome_lists(test_chromosomes, valid_chromosomes)


def split_metadata(
    split: str, chromosome_lists: tuple[list[str], list[str] | None] | None,
    val_fraction: float, test_fraction: float, seed: int,
) -> dict[str, Any]:
    """metadata.json's record of how the split was made (counts are added by the caller)."""
    if chromosome_lists is None:
        return {"method": "gene", "seed": seed, "val_fraction": val_fraction,
                "test_fraction": test_fraction}
    test, valid = chromosome_lists
    record: dict[str, Any] = {"method": "chromosome", "test_chromosomes": test,
                              "valid_chromosomes": valid}
    if valid is None:  # validation genes drawn from the other chromosomes
        record.update(valid_by="gene", val_fraction=val_fraction, seed=seed)
    else:
        record["valid_by"] = "chromosome"
    return record


def check_tissues(tissues: Sequence[str] | None) -> list[str]:
    """The requested tissue list (default: the 30 of IsoFormer), refusing repeats and clashes."""
    tissues = list(TISSUES if tissues is None else tissues)
    if not tissues:
        raise IsoformerError("--tissues: name at least one tissue")
    repeated = sorted(t for t, n in Counter(tissues).items() if n > 1)
    if repeated:
        raise IsoformerError(f"--tissues lists {', '.join(repeated)} more than once")
    clashes = [t for t in tissues if t in (*TRANSCRIPT_COLUMNS, *STRUCTURE_COLUMNS)]
    if clashes:
        raise IsoformerError(f"--tissues: {', '.join(clashes)} would clash with a dataset column")
    return tissues


def check_output_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise IsoformerError(
            f"{out} already exists and is not empty; choose another --out or remove it"
        )


def make_table(
    rows: dict[str, list[Any]], splits: list[str], tissues: list[str], targets: np.ndarray
) -> pl.DataFrame:
    """transcripts.parquet's table: the schema columns, the structure columns when `rows` holds
    them (an InstaDeep import has no exons), then one float32 column per tissue."""
    columns: dict[str, pl.Series] = {}
    structure = STRUCTURE_COLUMNS if STRUCTURE_COLUMNS[0] in rows else ()
    for column in (*TRANSCRIPT_COLUMNS, *structure):
        values = splits if column == "split" else rows[column]
        columns[column] = pl.Series(column, values, dtype=_column_dtype(column))
    for t, tissue in enumerate(tissues):
        columns[tissue] = pl.Series(tissue, targets[:, t], dtype=pl.Float32)
    return pl.DataFrame(columns)


def _column_dtype(column: str) -> pl.DataType:
    if column in ("exon_starts", "exon_ends"):
        return pl.List(pl.Int64)
    if column in ("start", "end", "tss", "cds_phase") or column.endswith("_length"):
        return pl.Int64
    return pl.String


def base_metadata(tissues: list[str], dna_length: int, fasta: Path) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "isoformer_version": __version__,
        "tissues": tissues,
        "target": "log(1 + mean TPM over the tissue's samples), natural log",
        "dna_length": dna_length,
        "fasta": {"path": str(fasta.resolve()), "name": fasta.name},
    }


def describe_file(path: Path) -> dict[str, Any]:
    """Name, absolute path, size and sha256 of an input file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return {
        "name": path.name,
        "path": str(path.resolve()),
        "size": path.stat().st_size,
        "sha256": digest.hexdigest(),
    }


def write_dataset(table: pl.DataFrame, metadata: dict[str, Any], out: Path) -> None:
    """Write both files into a temporary directory beside `out`, then rename it to `out`."""
    check_output_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        table.write_parquet(tmp / TRANSCRIPTS_FILE)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        if out.is_dir():
            out.rmdir()  # empty (checked above); rename cannot replace a directory portably
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _count_by_split(table: pl.DataFrame) -> dict[str, int]:
    counts = dict(table["split"].value_counts().iter_rows())
    return {split: int(counts.get(split, 0)) for split in SPLITS}


def _format_counts(counts: Counter[str] | dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items())) or "none"
