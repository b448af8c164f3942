"""Streamed GCT -> log(1 + mean TPM) per tissue, on tests/files/gtex_*: answers derived by hand.

Samples: S1, S2 Blood; S3 Brain; S4-S6 Liver; S7 Bone Marrow (outside the requested set);
S8 Brain is in the attributes file only. Means (then natural log1p):
    ENST...01: Blood (1+3)/2 = 2, Brain 0, Liver (2+4+6)/3 = 4         -> ln 3, 0, ln 5
    ENST...02: Blood 0.5, Brain 9, Liver (0+0+3)/3 = 1                 -> ln 1.5, ln 10, ln 2
    ENST...03: all 0 (its only TPM is S7's, ignored)                    -> 0, 0, 0
    ENST...99: Blood (10+20)/2 = 15, Brain 1, Liver 1 ("1.0", "1e0")    -> ln 16, ln 2, ln 2
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from isoformer.data.gtex import read_sample_tissues, read_tissue_expression
from isoformer.errors import InputFormatError

FILES = Path(__file__).parent / "files"
GCT = FILES / "gtex_transcript_tpm.gct"
SAMPLES = FILES / "gtex_sample_attributes.txt"
TISSUES = ["Blood", "Brain", "Liver"]
EXPECTED = np.log(
    np.array([[3, 1, 5], [1.5, 10, 2], [1, 1, 1], [16, 2, 2]], dtype=np.float64)
).astype(np.float32)


def gct_lines() -> list[str]:
    return GCT.read_text().splitlines()


def write(tmp_path: Path, lines: list[str], name: str = "bad.gct") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def read(path: Path, tissues: list[str] = TISSUES, **kwargs):
    return read_tissue_expression(
        path, read_sample_tissues(SAMPLES), tissues, progress=False, samples_path=SAMPLES, **kwargs
    )


def test_sample_tissues():
    tissues = read_sample_tissues(SAMPLES)
    assert tissues["S1"] == "Blood" and tissues["S7"] == "Bone Marrow" and len(tissues) == 8


@pytest.mark.parametrize("block_bytes", [1, 1 << 20])  # one row per block, and all rows at once
def test_mean_tpm_log1p_per_tissue(block_bytes):
    result = read(GCT, block_bytes=block_bytes)
    assert result.transcript_ids == [
        "ENST00000000001.1", "ENST00000000002.1", "ENST00000000003.2", "ENST00000000099.1"
    ]
    assert result.values.dtype == np.float32 and result.values.shape == (4, 3)
    np.testing.assert_allclose(result.values, EXPECTED, rtol=1e-6)
    assert result.samples_per_tissue == {"Blood": 2, "Brain": 1, "Liver": 3}
    assert result.ignored_samples == {"Bone Marrow": 1}
    assert result.tissues_without_samples == []


def test_gzipped_and_standard_gct_header(tmp_path):
    lines = gct_lines()
    lines[2] = lines[2].replace("transcript_id\tgene_id", "Name\tDescription")
    packed = tmp_path / "tpm.gct.gz"
    packed.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    np.testing.assert_allclose(read(packed).values, EXPECTED, rtol=1e-6)


def test_tissue_without_samples_is_nan_and_reported(caplog):
    result = read(GCT, tissues=["Liver", "Heart"])
    np.testing.assert_allclose(result.values[:, 0], EXPECTED[:, 2], rtol=1e-6)
    assert np.isnan(result.values[:, 1]).all()
    assert result.tissues_without_samples == ["Heart"]
    assert result.ignored_samples == {"Blood": 2, "Brain": 1, "Bone Marrow": 1}
    assert "no samples for tissues Heart" in caplog.text


def edit(line: int, old: str, new: str):
    def apply(lines: list[str]) -> list[str]:
        assert old in lines[line - 1]
        lines[line - 1] = lines[line - 1].replace(old, new, 1)
        return lines

    return apply


BAD_GCTS = {
    "no version": (lambda lines: lines[1:], 1, "expected '#1.2'"),
    "garbled dims": (edit(2, "4\t7", "4 rows"), 2, "dimensions"),
    "header": (edit(3, "transcript_id", "id"), 3, "header must start with"),
    "sample count": (
        edit(2, "4\t7", "4\t8"), 3, "header names 7 samples but the dimensions line says 8"
    ),
    "repeated sample": (edit(3, "S2", "S1"), 3, "header repeats sample ids: S1"),
    "short row": (
        edit(5, "\t0\t0\t3\t0", "\t0\t0\t3"), 5, "expected 9 tab-separated columns, found 8"
    ),
    "non-numeric": (edit(6, "\t7", "\tseven"), 6, "column 9: TPM 'seven' is not a number"),
    "empty": (edit(6, "\t7", "\t"), 6, "column 9: TPM '' is not a number"),
    "empty row": (  # 7 empty TPMs: one row's worth, whether parsed as nulls or dropped
        edit(6, "\t0\t0\t0\t0\t0\t0\t7", "\t" * 7), 6, "column 3: TPM '' is not a number"
    ),
    "negative": (edit(4, "\t3\t", "\t-3\t"), 4, "column 4: TPM '-3' is not a finite value >= 0"),
    "nan": (edit(7, "\t20\t", "\tNaN\t"), 7, "column 4: TPM 'NaN' is not a finite value >= 0"),
    "truncated": (
        lambda lines: lines[:-1], 7, "truncated: 3 data rows, the dimensions line says 4"
    ),
    "extra row": (edit(2, "4\t7", "3\t7"), 7, "more data rows than the 3 of the dimensions line"),
    "repeated transcript": (
        edit(7, "ENST00000000099.1", "ENST00000000001.1"), 7, "listed twice (first at line 4)"
    ),
}


@pytest.mark.parametrize("block_bytes", [1, 1 << 20])
@pytest.mark.parametrize("case", list(BAD_GCTS))
def test_malformed_gct(tmp_path, case, block_bytes):
    change, line, problem = BAD_GCTS[case]
    path = write(tmp_path, change(gct_lines()))
    with pytest.raises(InputFormatError) as err:
        read(path, block_bytes=block_bytes)
    assert (err.value.path, err.value.line) == (str(path), line)
    assert problem in err.value.problem


def test_truncated_gzip(tmp_path):
    packed = gzip.compress(GCT.read_bytes())
    path = tmp_path / "cut.gct.gz"
    path.write_bytes(packed[: len(packed) - 12])  # drop the gzip trailer and some data
    with pytest.raises(InputFormatError, match=r"cut.gct.gz: (truncated|.*expected 9)"):
        read(path)


def test_sample_missing_from_attributes(tmp_path):
    attributes = tmp_path / "attributes.txt"
    attributes.write_text("\n".join(SAMPLES.read_text().splitlines()[:6]) + "\n")  # S1-S5
    with pytest.raises(InputFormatError) as err:
        read_tissue_expression(GCT, read_sample_tissues(attributes), TISSUES, progress=False,
                               samples_path=attributes)
    assert err.value.path == str(attributes)
    expected = f"2 samples of {GCT} are missing from this file, e.g. S6, S7"
    assert err.value.problem.startswith(expected)


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("SAMPID\tSMTSD\nS1\tWhole Blood\n", 1, "header lacks SMTS (columns found: SAMPID, SMTSD)"),
        ("SAMPID\tSMTS\nS1\n", 2, "1 fields, too few to hold SAMPID and SMTS"),
        ("SAMPID\tSMTS\nS1\tBlood\nS1\tLiver\n", 3, "sample S1 listed again with tissue 'Liver'"),
    ],
)
def test_malformed_sample_attributes(tmp_path, text, line, problem):
    path = tmp_path / "attributes.txt"
    path.write_text(text)
    with pytest.raises(InputFormatError) as err:
        read_sample_tissues(path)
    assert err.value.line == line and err.value.problem.startswith(problem)

