"""`isoformer build / export / import-instadeep` through `isoformer.cli.main`: exit codes and
one-line error messages (file, line, problem), no traceback, no output left on errors."""

from __future__ import annotations

import json
from pathlib import Path

from test_build import inputs  # noqa: F401  (fixture)
from test_instadeep import rows, write_csv

from isoformer.cli import main

TISSUE_ARGS = ["--tissues", "Blood", "Brain", "Liver"]


def build_args(paths: dict[str, Path], out: Path) -> list[str]:
    return ["build", "--fasta", str(paths["fasta"]), "--gtf", str(paths["gtf"]),
            "--tpm", str(paths["tpm"]), "--samples", str(paths["samples"]), "--out", str(out)]


def one_line_error(capsys, prefix: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(prefix), err
    return err[0]


def test_build_then_export(inputs, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "dataset"
    assert main([*build_args(inputs, out), *TISSUE_ARGS, "--dna-length", "24", "--seed", "1"]) == 0
    jsonl = tmp_path / "test.jsonl"
    assert main(["export", "--data", str(out), "--output", str(jsonl), "--limit", "2"]) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["transcript_id"] for r in records] == ["ENST00000000001.1", "ENST00000000002.1"]
    assert len(records[0]["dna_sequence"]) == 24


def test_build_errors(inputs, tmp_path, capsys):  # noqa: F811
    inputs["tpm"].write_text(inputs["tpm"].read_text().replace("\t100\n", "\t100\t5\n"))
    out = tmp_path / "dataset"
    assert main([*build_args(inputs, out), *TISSUE_ARGS]) == 2
    message = one_line_error(capsys, "isoformer build: error: ")
    assert message.endswith("gtex_transcript_tpm.gct:4: expected 9 tab-separated columns, found 10")
    assert not out.exists()
    missing = tmp_path / "absent.gct"
    inputs["tpm"] = missing
    assert main(build_args(inputs, out)) == 2
    assert one_line_error(capsys, "isoformer build: error: ").endswith("absent.gct: file not found")


def test_export_and_import_errors(tmp_path, capsys):
    assert main(["export", "--data", str(tmp_path), "--output", str(tmp_path / "x.jsonl")]) == 2
    assert "not a dataset directory" in one_line_error(capsys, "isoformer export: error: ")
    csv_path = write_csv(tmp_path / "GTEx_final.csv", rows())
    fasta = Path(__file__).parent / "files" / "genome.fa"
    args = ["import-instadeep", "--csv", str(csv_path), "--fasta", str(fasta), "--out",
            str(tmp_path / "d")]
    assert main([*args, "--column", "transcript_id=tx"]) == 2
    message = one_line_error(capsys, "isoformer import-instadeep: error: ")
    assert "missing columns (transcript_id -> 'tx'); columns found: transcript_id_gtex," in message
    assert not (tmp_path / "d").exists()
