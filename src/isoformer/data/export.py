"""`isoformer export`: dataset records as JSON lines, DNA windows materialised from the FASTA.

Each line: transcript_id, gene_id, split, utr5_length, cds_length, utr3_length (the RNA's regions,
for `attribute`'s figures), dna_sequence, rna_sequence, protein_sequence, targets (tissue -> value;
null where the dataset has NaN, since JSON has no NaN). The three *_sequence keys are exactly the
prediction input format; `predict` carries the others through.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import rich.progress

from isoformer.constants import (
    DNA_SEQUENCE,
    GENE_ID,
    PROTEIN_SEQUENCE,
    RNA_SEQUENCE,
    TARGETS,
    TRANSCRIPT_ID,
)
from isoformer.data.dataset import TranscriptDataset, read_transcripts
from isoformer.errors import IsoformerError
from isoformer.files import atomic_output

log = logging.getLogger(__name__)

REGION_LENGTHS = ("utr5_length", "cds_length", "utr3_length")


def export_jsonl(
    data: str | Path,
    output: str | Path,
    split: str | None = None,
    limit: int | None = None,
    dna_length: int | None = None,
    fasta: str | Path | None = None,
    progress: bool = True,
) -> int:
    """Write the first `limit` records (all when None) of `split` (all splits when None); returns
    how many. The file appears complete or not at all (temporary file, then rename)."""
    if limit is not None and limit < 0:
        raise IsoformerError(f"--limit must be >= 0, got {limit}")
    output = Path(output)
    dataset = TranscriptDataset(data, split=split, dna_length=dna_length, fasta=fasta)
    # Same row order as the dataset.
    carried = read_transcripts(data, split).select("split", *REGION_LENGTHS).to_dicts()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    try:
        with atomic_output(output) as tmp, tmp.open("w", encoding="utf-8") as handle:
            for index in rich.progress.track(
                range(n), description=f"writing {output.name}", disable=not progress, transient=True
            ):
                item = dataset[index]
                record = {
                    TRANSCRIPT_ID: item[TRANSCRIPT_ID],
                    GENE_ID: item[GENE_ID],
                    **carried[index],
                    DNA_SEQUENCE: item[DNA_SEQUENCE],
                    RNA_SEQUENCE: item[RNA_SEQUENCE],
                    PROTEIN_SEQUENCE: item[PROTEIN_SEQUENCE],
                    TARGETS: {
                        tissue: None if math.isnan(value) else float(value)
                        for tissue, value in zip(
                            dataset.tissues, item[TARGETS].tolist(), strict=True
                        )
                    },
                }
                handle.write(json.dumps(record) + "\n")
    finally:
        dataset.close()
    log.info("%s: %d records (split %s, DNA %d bp)", output, n, split or "all", dataset.dna_length)
    return n
