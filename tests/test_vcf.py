"""read_vcf on hand-written VCF text: plain and bgzipped, multi-allelic and symbolic ALTs, ALTs
equal to REF, the line numbers of malformed records, and that records stream.

The header below is 3 lines, so record k (1-based) is line 3 + k.
"""

from __future__ import annotations

import gzip
import logging
import types

import pysam
import pytest

from isoformer.data.vcf import Variant, VcfCounts, read_vcf
from isoformer.errors import InputFormatError

HEADER = (
    "##fileformat=VCFv4.2\n"
    "##contig=<ID=chr1,length=1000>\n"
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
)
RECORDS = (
    "chr1\t5\trs1\tA\tG\t50\tPASS\t.\tGT\t0/1\n"  # line 4: SNV
    "chr1\t10\t.\tC\tT,CAG,<DEL>\t.\t.\t.\tGT\t1/2\n"  # line 5: SNV, insertion, symbolic
    "chr2\t20\t.\tacgt\ta\t.\t.\t.\tGT\t0/1\n"  # line 6: deletion, lower case, contig not declared
    "chr1\t30\t.\tG\t*,G[chr2:5[,]chr2:5]G,G.\t.\t.\t.\tGT\t1/1\n"  # line 7: all symbolic
    "chr1\t40\t.\tT\t.\t.\t.\t.\tGT\t0/0\n"  # line 8: no ALT
)
EXPECTED = [
    Variant("chr1", 5, "A", "G", 4),
    Variant("chr1", 10, "C", "T", 5),
    Variant("chr1", 10, "C", "CAG", 5),
    Variant("chr2", 20, "ACGT", "A", 6),
]
TOO_FEW_FIELDS = (
    "expected at least 8 tab-separated fields (CHROM POS ID REF ALT QUAL FILTER INFO)"
)


def write(path, text):
    path.write_text(text)
    return path


def test_plain_vcf_splits_alleles_skips_symbolic_ones_and_counts(tmp_path):
    counts = VcfCounts()
    assert list(read_vcf(write(tmp_path / "a.vcf", HEADER + RECORDS), counts)) == EXPECTED
    # <DEL> on line 5, four on line 7, "." on line 8
    assert counts == VcfCounts(records=5, alleles=4, symbolic=6, ref_equal_alt=0)


def test_alt_equal_to_ref_is_skipped_counted_and_logged(tmp_path, caplog):
    # Line 4: A>A alone; line 5: lower-case c reads C, so its ALT C equals REF and T is kept;
    # line 6: AC>AC and AC>A (a deletion). Three alleles skipped, two kept.
    body = (
        "chr1\t5\t.\tA\tA\t.\t.\t.\tGT\t0/0\n"
        "chr1\t10\t.\tc\tC,T\t.\t.\t.\tGT\t0/2\n"
        "chr1\t20\t.\tAC\tAC,A\t.\t.\t.\tGT\t0/2\n"
    )
    counts = VcfCounts()
    with caplog.at_level(logging.INFO, logger="isoformer.data.vcf"):
        variants = list(read_vcf(write(tmp_path / "same.vcf", HEADER + body), counts))
    assert variants == [Variant("chr1", 10, "C", "T", 5), Variant("chr1", 20, "AC", "A", 6)]
    assert counts == VcfCounts(records=3, alleles=2, symbolic=0, ref_equal_alt=3)
    assert "3 records, 2 alleles read, 0 symbolic alleles and 3 ALT equal to REF skipped" in (
        caplog.text)


def test_variant_coordinates():
    deletion = EXPECTED[3]
    assert (deletion.variant_id, deletion.start, deletion.end) == ("chr2:20:ACGT:A", 19, 23)
    assert (EXPECTED[0].start, EXPECTED[0].end) == (4, 5)


def test_bgzipped_vcf_reads_the_same(tmp_path):
    plain = write(tmp_path / "a.vcf", HEADER + RECORDS)
    packed = tmp_path / "a.vcf.gz"
    pysam.tabix_compress(str(plain), str(packed))
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert list(read_vcf(packed)) == EXPECTED


def test_plain_gzip_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "a.vcf.gz"
    path.write_bytes(gzip.compress((HEADER + RECORDS).encode()))
    with pytest.raises(InputFormatError, match=r"a\.vcf\.gz: gzip-compressed but not with bgzip"):
        list(read_vcf(path))


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ("chr1\tX5\t.\tA\tG\t.\t.\t.", "POS 'X5' is not a position >= 1"),
        ("chr1\t0\t.\tA\tG\t.\t.\t.", "POS 0 is not a position >= 1"),
        ("chr1\t5\t.\tAQ\tG\t.\t.\t.", "REF 'AQ' has bases other than A, C, G, T, N"),
        ("chr1\t5\t.\t.\tG\t.\t.\t.", "REF is missing ('.')"),
        ("chr1\t5\t.\tA\tGZ\t.\t.\t.", "ALT 'GZ' has bases other than A, C, G, T, N and is not "
         "symbolic"),
        ("\t5\t.\tA\tG\t.\t.\t.", "CHROM is empty"),
        ("chr1\t5\t.\tA\tG", f"{TOO_FEW_FIELDS}, found 5"),
        ("chr1 5 . A G . . .", f"{TOO_FEW_FIELDS}, found 1"),
    ],
)
def test_malformed_record_names_the_file_and_line(tmp_path, record, problem):
    # One good record first (line 4), the bad one on line 5.
    path = write(tmp_path / "bad.vcf", HEADER.replace("\tFORMAT\tS1", "") +
                 "chr1\t1\t.\tA\tC\t.\t.\t.\n" + record + "\n")
    with pytest.raises(InputFormatError) as caught:
        list(read_vcf(path))
    assert str(caught.value) == f"{path}:5: {problem}"


def test_blank_line_in_the_body_is_malformed(tmp_path):
    first = RECORDS.index("\n") + 1
    path = write(tmp_path / "blank.vcf", HEADER + RECORDS[:first] + "\n" + RECORDS[first:])
    with pytest.raises(InputFormatError, match=r"blank\.vcf:5: expected at least 8 .* found 1$"):
        list(read_vcf(path))


def test_records_stream_one_at_a_time(tmp_path):
    # The bad record is the last line: the first variants come out before it is read.
    path = write(tmp_path / "a.vcf", HEADER + RECORDS + "chr1\tX\t.\tA\tG\t.\t.\t.\n")
    variants = read_vcf(path)
    assert isinstance(variants, types.GeneratorType)
    assert next(variants) == EXPECTED[0]
    assert next(variants) == EXPECTED[1]
    with pytest.raises(InputFormatError, match=r"a\.vcf:9: POS 'X'"):
        list(variants)


def test_missing_and_non_vcf_files(tmp_path):
    with pytest.raises(InputFormatError, match="nope.vcf: VCF file not found"):
        list(read_vcf(tmp_path / "nope.vcf"))
    text = write(tmp_path / "notes.vcf", "chr1\t5\t.\tA\tG\t.\t.\t.\n")
    with pytest.raises(InputFormatError, match=r"notes\.vcf: not a VCF file"):
        list(read_vcf(text))
