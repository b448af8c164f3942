"""A hand-written dataset directory in the real on-disk format (schema.py), tiny enough for tests.

One 3 kb chromosome, genes of 1-3 isoforms on both strands, three tissues; targets are a simple
function of each isoform's RNA GC content and coding status, so a model has something to learn.
Genes 0-7 are train, 8-9 valid, 10-11 test; tissue "Blood" has no value (NaN) for the first
isoform of every gene, like a tissue without samples.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl

from isoformer.data.schema import METADATA_FILE, TRANSCRIPT_COLUMNS, TRANSCRIPTS_FILE

TISSUES = ["Adipose Tissue", "Blood", "Brain"]
DNA_LENGTH = 96
# The tiny preset with a DNA window that fits this toy genome's genes (keeps tests fast).
TINY_OVERRIDES = [f"model.dna_length={DNA_LENGTH}"]
CHROM_LENGTH = 3000
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def _split(gene: int) -> str:
    return "train" if gene < 8 else "valid" if gene < 10 else "test"


def write_tiny_dataset(
    out: Path, n_genes: int = 12, dna_length: int = DNA_LENGTH, seed: int = 0
) -> Path:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    genome = "".join(rng.choice("ACGT") for _ in range(CHROM_LENGTH))
    (out / "genome.fa").write_text(
        ">chr1\n" + "\n".join(genome[i : i + 60] for i in range(0, CHROM_LENGTH, 60)) + "\n"
    )

    rows = []
    for gene in range(n_genes):
        strand = "+" if gene % 2 == 0 else "-"
        for isoform in range(1 + gene % 3):
            start = 100 + 200 * gene + 10 * isoform
            rna_length = rng.randint(30, 90)
            end = start + rna_length
            rna = genome[start:end]
            coding = isoform != 1
            protein = (
                "M" + "".join(rng.choice(AMINO_ACIDS) for _ in range(rna_length // 4))
                if coding
                else ""
            )
            gc = (rna.count("G") + rna.count("C")) / len(rna)
            targets = [3.0 * gc + coding, 1.0 + 2.0 * gc, 2.0 - gc + 0.5 * coding]
            if isoform == 0:
                targets[1] = float("nan")
            rows.append(
                {
                    "transcript_id": f"ENST{gene:05d}{isoform}.1",
                    "gene_id": f"ENSG{gene:05d}.1",
                    "gene_name": f"G{gene}",
                    "transcript_type": "protein_coding" if coding else "lncRNA",
                    "chrom": "chr1",
                    "strand": strand,
                    "start": start,
                    "end": end,
                    "tss": start if strand == "+" else end - 1,
                    "rna": rna,
                    "protein": protein,
                    "utr5_length": 0,
                    "cds_length": 3 * len(protein) + 3 if coding else 0,
                    "utr3_length": 0,
                    "split": _split(gene),
                    **{
                        tissue: np.float32(value)
                        for tissue, value in zip(TISSUES, targets, strict=True)
                    },
                }
            )
    table = pl.DataFrame(rows).select([*TRANSCRIPT_COLUMNS, *TISSUES])
    table = table.with_columns([pl.col(t).cast(pl.Float32) for t in TISSUES])
    table.write_parquet(out / TRANSCRIPTS_FILE)
    metadata = {
        "tissues": TISSUES,
        "dna_length": dna_length,
        "fasta": {"path": "genome.fa"},
        "inputs": {"genome.fa": {"sha256": "hand-written test fixture"}},
    }
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return out


def train_tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch tiny run on a fresh tiny dataset: (run directory, dataset directory)."""
    from isoformer.training.fit import train

    data = write_tiny_dataset(tmp_path_factory.mktemp("data"))
    run = train(data, "tiny", overrides=TINY_OVERRIDES, out=tmp_path_factory.mktemp("runs") / "run",
                max_epochs=1, progress=False)
    return run.directory, data
