"""Indexed genome FASTA: 0-based half-open random access, N-padding, strand-aware TSS windows.

pyfaidx does the indexing (it writes `<fasta>.fai` next to the file when missing or stale) and
the reading of plain and bgzipped FASTA (`.fa.gz` from `bgzip`, through Biopython's bgzf); a
plain-gzip FASTA cannot be indexed and is refused with a hint.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import TracebackType

import pyfaidx

from isoformer.errors import InputFormatError, IsoformerError

STRANDS = ("+", "-")
_NON_ACGTN = re.compile("[^ACGTN]")


def mask_non_acgtn(seq: str) -> tuple[str, int]:
    """`seq` with every character other than A, C, G, T, N read as N, and how many were replaced.

    hg38 holds a few IUPAC codes (R, Y, M, ...); to every encoder they mean an unknown base.
    """
    return _NON_ACGTN.subn("N", seq)


def reverse_complement(seq: str) -> str:
    """Reverse complement of a DNA sequence, case preserved.

    IUPAC codes are complemented as such (R <-> Y, K <-> M, B <-> V, D <-> H; N, S, W, X map to
    themselves), using pyfaidx's table; any other character raises ValueError naming it.
    """
    try:
        return pyfaidx.complement(seq)[::-1]
    except ValueError as err:  # pyfaidx's message ends with a newline
        raise ValueError(str(err).strip()) from None


def window_interval(tss: int, strand: str, length: int) -> tuple[int, int]:
    """The forward-strand interval `[start, end)` of the `length` bases around `tss` that read,
    5'->3' on `strand`, with the TSS at index `length // 2`.

    Plus strand: `[tss - length//2, tss - length//2 + length)`. Minus strand (read as the reverse
    complement): `[tss + length//2 + 1 - length, tss + length//2 + 1)`. For even lengths these are
    `[tss - L/2, tss + L/2)` and `[tss - L/2 + 1, tss + L/2 + 1)`; for odd lengths both are the
    symmetric `[tss - L//2, tss + L//2 + 1)`, L//2 bases on each side of the TSS.
    """
    if length < 1:
        raise ValueError(f"window length must be positive, got {length}")
    if strand == "+":
        start = tss - length // 2
        return start, start + length
    if strand == "-":
        end = tss + length // 2 + 1
        return end - length, end
    raise ValueError(f"strand must be one of {STRANDS}, got {strand!r}")


class Genome:
    """A genome FASTA opened through its index; all coordinates are 0-based, half-open.

    Sequences come back upper case (soft-masked repeats are ordinary bases to every encoder), and
    positions outside a chromosome read as `N`, so a window can run past either chromosome end.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputFormatError(self.path, "FASTA file not found")
        try:
            self._fasta = pyfaidx.Fasta(str(self.path), as_raw=True, sequence_always_upper=True)
        except (pyfaidx.FastaIndexingError, pyfaidx.UnsupportedCompressionFormat) as err:
            raise InputFormatError(self.path, f"not a usable FASTA file: {err}") from None
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise InputFormatError(self.path, f"cannot read or index the FASTA: {err}") from None
        self._lengths = {name: len(record) for name, record in self._fasta.records.items()}

    @property
    def chroms(self) -> list[str]:
        """Sequence names in FASTA order."""
        return list(self._lengths)

    def has(self, chrom: str) -> bool:
        return chrom in self._lengths

    def chrom_length(self, chrom: str) -> int:
        try:
            return self._lengths[chrom]
        except KeyError:
            raise IsoformerError(f"{self.path}: no sequence named {chrom!r}") from None

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Upper-case bases of `chrom[start:end]`; positions < 0 or >= its length read N."""
        if start > end:
            raise ValueError(f"fetch {chrom}:{start}-{end}: start is after end")
        length = self.chrom_length(chrom)
        inner_start, inner_end = max(start, 0), min(end, length)
        inner = self._fasta[chrom][inner_start:inner_end] if inner_start < inner_end else ""
        left_pad = min(inner_start, end) - start
        right_pad = end - max(inner_end, start)
        return "N" * left_pad + inner + "N" * right_pad

    def window(self, chrom: str, tss: int, strand: str, length: int) -> str:
        """`length` bases around `tss` read 5'->3' on `strand`, with the TSS at index `length // 2`:
        the interval `window_interval(tss, strand, length)`, reverse complemented on "-".

        Only A, C, G, T, N come back: positions off the chromosome and IUPAC codes read N.
        """
        start, end = window_interval(tss, strand, length)
        forward = mask_non_acgtn(self.fetch(chrom, start, end))[0]
        return forward if strand == "+" else reverse_complement(forward)

    def close(self) -> None:
        self._fasta.close()

    def __enter__(self) -> Genome:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Genome({str(self.path)!r}, {len(self._lengths)} sequences)"
