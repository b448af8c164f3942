"""Throughput of `read_gtf` and `transcript_sequences` on a generated GENCODE-style GTF.

The GTF repeats the 30 feature rows of tests/files/annotation.gtf with fresh versioned ids up to
--lines rows (GENCODE v26 has ~2.6M), plain and gzipped. Usage:
    python benchmarks/read_gtf.py [--lines 500000]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from pathlib import Path

from isoformer.data.gencode import read_gtf, transcript_sequences
from isoformer.data.genome import Genome

FILES = Path(__file__).resolve().parents[1] / "tests" / "files"
GENCODE_V26_LINES = 2_600_000


def write_gtf(path: Path, n_lines: int) -> int:
    rows = [line for line in (FILES / "annotation.gtf").read_text().splitlines() if line[0] != "#"]
    written = 0
    with open(path, "w") as out:
        for copy in range(n_lines // len(rows) + 1):
            for row in rows:
                row = row.replace("ENST0000000000", f"ENST{copy:09d}")
                out.write(row.replace("ENSG0000000000", f"ENSG{copy:09d}") + "\n")
                written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain, packed = Path(tmp) / "big.gtf", Path(tmp) / "big.gtf.gz"
        n_lines = write_gtf(plain, args.lines)
        with open(plain, "rb") as source, gzip.open(packed, "wb") as target:
            shutil.copyfileobj(source, target)
        for path in (plain, packed):
            start = time.perf_counter()
            result = read_gtf(path)
            seconds = time.perf_counter() - start
            rate = n_lines / seconds
            print(
                f"read_gtf {path.name}: {n_lines:,} lines in {seconds:.2f} s = {rate:,.0f} lines/s "
                f"(GENCODE v26 ~{GENCODE_V26_LINES / rate:.0f} s)"
            )
        fasta = Path(tmp) / "genome.fa"
        shutil.copy(FILES / "genome.fa", fasta)
        with Genome(fasta) as genome:
            start = time.perf_counter()
            for tx in result.transcripts.values():
                transcript_sequences(tx, genome, plain)
            seconds = time.perf_counter() - start
        print(
            f"transcript_sequences: {len(result.transcripts) / seconds:,.0f} transcripts/s "
            "(fixture exons are short: real transcripts read more bases per call)"
        )


if __name__ == "__main__":
    main()
