"""VCF reading for variant effects: pysam (htslib) streams the records, one `Variant` per ALT.

- Files: plain-text VCF or bgzipped VCF (`.vcf.gz` from `bgzip`, no index needed). A plain-gzip
  VCF is refused with a hint: pysam opens only BGZF-compressed text (it cannot seek in gzip).
  BCF is refused too, since its records have no line numbers.
- Line numbers: `Variant.line` is the 1-based line of the record in the decompressed text,
  counted as (header lines, every line up to and including `#CHROM`) + (1-based record index).
  This is exact because htslib accepts no blank or comment line after the header: such a line
  is a malformed record here.
- Multi-allelic records give one Variant per ALT, in ALT order, all with the record's line.
- Symbolic ALTs are skipped and counted (`VcfCounts.symbolic`): `<...>` (`<DEL>`, `<NON_REF>`,
  `<*>`), `*` (overlapping deletion), `.` (no ALT), breakends (`G[chr2:5[`, `]chr2:5]G`) and
  single breakends (`G.`, `.G`).
- An ALT equal to its REF (`chr1 5 . A A`, case aside) changes nothing: it is skipped and counted
  (`VcfCounts.ref_equal_alt`).
- Malformed records raise InputFormatError naming the file and line: an empty CHROM, POS not an
  integer >= 1, fewer than 8 fields, REF missing or with bases other than A/C/G/T/N, an ALT of
  other bases that is not symbolic, or anything else htslib cannot parse. REF and ALT come back
  upper case.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pysam

from isoformer.data.gencode import open_text
from isoformer.errors import InputFormatError

log = logging.getLogger(__name__)

_ACGTN = re.compile("[ACGTN]+")
_MIN_FIELDS = 8  # CHROM POS ID REF ALT QUAL FILTER INFO


@dataclass(frozen=True)
class Variant:
    chrom: str
    pos: int  # 1-based VCF POS
    ref: str  # upper case
    alt: str  # upper case, a single ALT allele
    line: int  # 1-based line number of the record in the (decompressed) VCF text

    @property
    def variant_id(self) -> str:
        return f"{self.chrom}:{self.pos}:{self.ref}:{self.alt}"

    @property
    def start(self) -> int:
        """0-based genome start of REF."""
        return self.pos - 1

    @property
    def end(self) -> int:
        """0-based half-open end of REF."""
        return self.start + len(self.ref)


@dataclass
class VcfCounts:
    records: int = 0  # data lines read
    alleles: int = 0  # (record, ALT) pairs yielded
    symbolic: int = 0  # ALT alleles skipped as symbolic (<DEL>, *, breakends, ...)
    ref_equal_alt: int = 0  # ALT alleles skipped as equal to REF (no change)


def is_symbolic(alt: str) -> bool:
    """True for ALT alleles that name no sequence (see the module docstring)."""
    return (
        alt.startswith("<")
        or alt in ("*", ".")
        or "[" in alt
        or "]" in alt
        or alt.startswith(".")
        or alt.endswith(".")
    )


def read_vcf(path: str | Path, counts: VcfCounts | None = None) -> Iterator[Variant]:
    """Streams a plain or bgzipped VCF with pysam; multi-allelic records split into one Variant
    per ALT; symbolic ALTs and ALTs equal to REF skipped and counted; malformed records raise
    InputFormatError(path, message, line).

    Plain gzip is refused with a hint to recompress with bgzip (pysam cannot read it). `counts`,
    when given, is updated as records stream by (it is complete once the iterator is exhausted).
    """
    path = Path(path)
    counts = counts if counts is not None else VcfCounts()
    if not path.is_file():
        raise InputFormatError(path, "VCF file not found")
    verbosity = pysam.set_verbosity(0)  # htslib's own messages go to stderr; ours name the line
    try:
        with _open_variant_file(path) as records:
            header_lines = _count_header_lines(path)
            while True:
                line = header_lines + counts.records + 1
                try:
                    record = next(records)
                except StopIteration:
                    break
                except (OSError, ValueError) as err:
                    raise InputFormatError(path, _diagnose(path, line, err), line) from None
                counts.records += 1
                for variant in _split_alleles(path, line, record, counts):
                    counts.alleles += 1
                    yield variant
    finally:
        pysam.set_verbosity(verbosity)
    log.info(
        "%s: %d records, %d alleles read, %d symbolic alleles and %d ALT equal to REF skipped",
        path, counts.records, counts.alleles, counts.symbolic, counts.ref_equal_alt,
    )


def _open_variant_file(path: Path) -> pysam.VariantFile:
    try:
        records = pysam.VariantFile(str(path), drop_samples=True)
    except NotImplementedError:  # pysam's tell() on a gzip (not BGZF) stream
        raise InputFormatError(
            path,
            "gzip-compressed but not with bgzip, which pysam cannot read; recompress it with "
            "`gunzip -c FILE | bgzip > FILE.bgz`",
        ) from None
    except ValueError:
        raise InputFormatError(
            path, "not a VCF file (it needs a ##fileformat line and a #CHROM header)"
        ) from None
    except OSError as err:
        raise InputFormatError(path, f"cannot read the VCF ({err})") from None
    if records.format != "VCF":
        records.close()
        raise InputFormatError(
            path, f"a {records.format} file; give VCF text (e.g. bcftools view -Oz)"
        )
    return records


def _split_alleles(
    path: Path, line: int, record: pysam.VariantRecord, counts: VcfCounts
) -> Iterator[Variant]:
    if not record.chrom:
        raise InputFormatError(path, "CHROM is empty", line)
    if record.pos < 1:
        raise InputFormatError(path, f"POS {record.pos} is not a position >= 1", line)
    ref = record.ref.upper()
    if ref == ".":
        raise InputFormatError(path, "REF is missing ('.')", line)
    if not _ACGTN.fullmatch(ref):
        raise InputFormatError(path, f"REF {record.ref!r} has bases other than A, C, G, T, N", line)
    for alt in record.alts or (".",):  # pysam reads a missing ALT as None
        alt = alt.upper()
        if is_symbolic(alt):
            counts.symbolic += 1
            continue
        if not _ACGTN.fullmatch(alt):
            raise InputFormatError(
                path, f"ALT {alt!r} has bases other than A, C, G, T, N and is not symbolic", line
            )
        if alt == ref:
            counts.ref_equal_alt += 1
            continue
        yield Variant(chrom=record.chrom, pos=record.pos, ref=ref, alt=alt, line=line)


def _count_header_lines(path: Path) -> int:
    """Lines up to and including `#CHROM`, read from the file: pysam's header text adds lines
    (e.g. ##FILTER=<ID=PASS>), so it cannot be counted instead."""
    count = 0
    try:
        with open_text(path) as lines:
            for line in lines:
                if not line.startswith("#"):
                    break
                count += 1
    except UnicodeDecodeError:
        raise InputFormatError(path, "the header is not UTF-8 text", count + 1) from None
    except (OSError, EOFError) as err:
        raise InputFormatError(path, f"cannot read the header ({err})", count + 1) from None
    return count


def _diagnose(path: Path, number: int, err: Exception) -> str:
    """Why htslib refused line `number` (it says only 'truncated file'): read the line again."""
    try:
        with open_text(path) as lines:
            text = next((line for n, line in enumerate(lines, start=1) if n == number), None)
    except (OSError, EOFError, UnicodeDecodeError):
        text = None
    if text is None:
        return f"the VCF is truncated or damaged ({err})"
    fields = text.rstrip("\r\n").split("\t")
    if len(fields) < _MIN_FIELDS:
        return (
            f"expected at least {_MIN_FIELDS} tab-separated fields (CHROM POS ID REF ALT QUAL "
            f"FILTER INFO), found {len(fields)}"
        )
    if not fields[1].isdigit():
        return f"POS {fields[1]!r} is not a position >= 1"
    return f"htslib cannot parse this record: {text.rstrip()[:80]!r}"
