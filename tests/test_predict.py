"""Prediction from files: the export format round-trips, bad records get documented errors, input
and output are streamed buffer by buffer in input order, on one device or replicas."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from tiny_dataset import DNA_LENGTH, TISSUES, train_tiny_run

from isoformer.cli import main
from isoformer.data.dataset import TranscriptDataset
from isoformer.errors import InputFormatError
from isoformer.model.isoformer import IsoFormer
from isoformer.model.prediction import Predictor
from isoformer.training.predict import predict_file, read_records, validate_record

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory)


def _export_records(data, split="test"):
    """Records as `isoformer export` writes them (targets: tissue -> value, NaN as null)."""
    dataset = TranscriptDataset(data, split=split, dna_length=DNA_LENGTH)
    records = []
    for item in dataset:
        targets = {
            t: (None if math.isnan(v) else float(v))
            for t, v in zip(dataset.tissues, item["targets"])
        }
        records.append(
            {
                "transcript_id": item["transcript_id"],
                "gene_id": item["gene_id"],
                "split": split,
                "dna_sequence": item["dna_sequence"],
                "rna_sequence": item["rna_sequence"],
                "protein_sequence": item["protein_sequence"],
                "targets": targets,
            }
        )
    return records


def _write_jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_export_format_round_trips(run, tmp_path):
    run_dir, data = run
    records = _export_records(data)
    source = _write_jsonl(tmp_path / "in.jsonl", [json.dumps(r) for r in records])
    summary = predict_file(run_dir, source, tmp_path / "out.jsonl")
    assert (summary.n_records, summary.n_failed) == (len(records), 0)

    outputs = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["transcript_id"] for o in outputs] == [r["transcript_id"] for r in records]
    assert all(
        o["tissues"] == TISSUES and len(o["predicted_expression"]) == len(TISSUES) for o in outputs
    )
    assert outputs[0]["targets"] == records[0]["targets"]  # other keys carried through
    assert "dna_sequence" not in outputs[0]
    expected = IsoFormer.from_pretrained(run_dir).predict(records, batch_size=4)
    np.testing.assert_allclose(
        [o["predicted_expression"] for o in outputs], expected, rtol=1e-5, atol=1e-6
    )


def test_json_input_object_or_list(run, tmp_path):
    run_dir, data = run
    record = _export_records(data)[0]
    (tmp_path / "one.json").write_text(json.dumps(record))
    (tmp_path / "many.json").write_text(json.dumps([record, record]))
    assert predict_file(run_dir, tmp_path / "one.json", tmp_path / "one.out").n_records == 1
    assert predict_file(run_dir, tmp_path / "many.json", tmp_path / "many.out").n_records == 2


def test_bad_records_get_errors_and_the_rest_predictions(run, tmp_path, capsys):
    run_dir, data = run
    good = _export_records(data)[0]
    lines = [
        json.dumps({**good, "id": "ok"}),
        '{"id": "broken", ',
        json.dumps({**good, "id": "bad-dna", "dna_sequence": "ACGT"}),
        "",
        json.dumps({**good, "id": "bad-rna-chars", "rna_sequence": "ACGX"}),
        json.dumps({**good, "id": "empty-rna", "rna_sequence": ""}),
        json.dumps({**good, "id": "no-protein", "protein_sequence": ""}),
        json.dumps(["not", "an", "object"]),
    ]
    source = _write_jsonl(tmp_path / "in.jsonl", lines)
    code = main(
        [
            "predict",
            "--run",
            str(run_dir),
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out.jsonl"),
        ]
    )
    assert code == 1
    assert "5 of 7 records failed" in capsys.readouterr().err

    outputs = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(outputs) == 7
    assert "predicted_expression" in outputs[0] and "predicted_expression" in outputs[5]
    assert outputs[1]["error"].startswith("line 2: not valid JSON")
    assert outputs[2]["error"] == (
        f"line 3: dna_sequence has length 4, shorter than the run's DNA window of {DNA_LENGTH}; "
        "export windows of that length with `isoformer export --run RUN`"
    )
    assert outputs[3]["error"] == "line 5: rna_sequence has invalid characters: 'X'"
    assert outputs[4]["error"] == "line 6: rna_sequence is empty"
    assert outputs[6]["error"] == "line 8: expected a JSON object, got list"
    assert [o.get("id") for o in outputs[:6]] == [
        "ok",
        None,
        "bad-dna",
        "bad-rna-chars",
        "empty-rna",
        "no-protein",
    ]


def test_missing_run_exits_2_without_output(tmp_path, capsys):
    source = _write_jsonl(tmp_path / "in.jsonl", ["{}"])
    code = main(
        [
            "predict",
            "--run",
            str(tmp_path / "nope"),
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out.jsonl"),
        ]
    )
    assert code == 2
    assert "not a training run" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_invalid_json_file_names_the_last_record_read(tmp_path):
    path = tmp_path / "in.json"
    path.write_text('[\n{"a": 1},\n{"a": }\n]')
    records = read_records(path)
    assert next(records).record == {"a": 1}  # streamed: read before the fault is reached
    with pytest.raises(InputFormatError, match=r"in\.json: not valid JSON after record 1 "
                       r"\(parse error: unallowed token at this point in JSON text\)$"):
        next(records)
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(InputFormatError, match=r"in\.json: not valid JSON \(lexical error: "
                       "invalid bytes in UTF8 string"):
        list(read_records(path))


def _all_records(data):
    return [r for split in ("train", "valid", "test") for r in _export_records(data, split)]


# Invalid lines interleaved with the records, and the error each gets ({} = the line number).
BAD_LINES = [
    (b'{"id": "broken", ', "line {}: not valid JSON (Expecting property name enclosed in double "
     "quotes)"),
    (b'{"id": "bad-dna", "dna_sequence": "ACGT", "rna_sequence": "ACGU"}',
     "line {}: dna_sequence has length 4, shorter than the run's DNA window of 96; export "
     "windows of that length with `isoformer export --run RUN`"),
    (b'["not", "an", "object"]', "line {}: expected a JSON object, got list"),
    (b'{"id": "\xff"}', "line {}: not valid UTF-8"),
]


def _interleaved(records):
    """JSONL bytes: each record, and after every third a bad line or a blank line; the expected
    output per line: (transcript_id, None) or (None, error)."""
    lines, expected = [], []
    for index, record in enumerate(records):
        lines.append(json.dumps(record).encode())
        expected.append((record["transcript_id"], None))
        if index % 3 == 2:
            bad, error = BAD_LINES[index // 3 % len(BAD_LINES)]
            lines.append(bad)
            expected.append((None, error.format(len(lines))))
            if index % 2:
                lines.append(b"  ")  # blank: skipped, not a record
    return b"".join(line + b"\n" for line in lines), expected


@pytest.mark.parametrize("buffer_size", [1, 5])
def test_streamed_output_is_the_predictions_of_all_records_at_once(run, tmp_path, monkeypatch,
                                                                  caplog, buffer_size):
    run_dir, data = run
    records = _all_records(data)
    text, expected = _interleaved(records)
    source = tmp_path / "in.jsonl"
    source.write_bytes(text)
    sizes = []
    real_predict = Predictor.predict

    def spy(self, inputs, *args, **kwargs):
        sizes.append(len(inputs))
        return real_predict(self, inputs, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", spy)
    with caplog.at_level(logging.INFO, logger="isoformer"):
        summary = predict_file(run_dir, source, tmp_path / "out.jsonl", batch_size=2,
                               buffer_size=buffer_size)
    n_bad = len(expected) - len(records)
    assert (summary.n_records, summary.n_failed) == (len(expected), n_bad)
    assert len(records) > 3 * 5 and n_bad >= len(BAD_LINES)  # several buffers of 5, every fault
    assert len(sizes) == -(-len(expected) // buffer_size)  # one prediction per buffer read
    assert max(sizes) <= buffer_size and sum(sizes) == len(records)

    outputs = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(o.get("transcript_id"), o.get("error")) for o in outputs] == expected
    at_once = IsoFormer.from_pretrained(run_dir).predict(records, batch_size=32)
    np.testing.assert_allclose([o["predicted_expression"] for o in outputs if "error" not in o],
                               at_once, rtol=1e-5, atol=1e-6)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"{len(expected)} records from {source} predicted in ")
               and f" ({n_bad} failed, " in m for m in messages)


def test_json_list_is_streamed_like_json_lines(run, tmp_path):
    run_dir, data = run
    records = _all_records(data)[:7]
    items = [*records[:4], "not an object", *records[4:]]
    (tmp_path / "in.json").write_text(json.dumps(items, indent=1))  # records span lines
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert predict_file(run_dir, tmp_path / "in.json", tmp_path / "json.out",
                        buffer_size=3).n_failed == 1
    predict_file(run_dir, tmp_path / "in.jsonl", tmp_path / "jsonl.out")
    from_json = [json.loads(line) for line in (tmp_path / "json.out").read_text().splitlines()]
    from_lines = [json.loads(line) for line in (tmp_path / "jsonl.out").read_text().splitlines()]
    assert from_json[4] == {"error": "record 5: expected a JSON object, got str"}
    assert [o["transcript_id"] for o in from_json[:4] + from_json[5:]] == [
        r["transcript_id"] for r in records]
    assert from_json[0]["targets"] == records[0]["targets"]  # numbers read as floats, written back
    np.testing.assert_allclose(
        [o["predicted_expression"] for o in from_json[:4] + from_json[5:]],
        [o["predicted_expression"] for o in from_lines], rtol=1e-5, atol=1e-6)


def test_a_json_list_broken_late_fails_without_output(run, tmp_path):
    run_dir, data = run
    records = _all_records(data)[:6]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(records)[:-2])  # the last record and the list never close
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    with pytest.raises(InputFormatError, match=r"in\.json: not valid JSON after record 5 "
                       r"\(parse error: premature EOF\)"):
        predict_file(run_dir, source, out, batch_size=2, buffer_size=2)  # 2 buffers written
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json", "out.jsonl"]


def test_devices_cpu_cpu_predict_as_one_device(run, tmp_path):
    run_dir, data = run
    source = _write_jsonl(tmp_path / "in.jsonl",
                          [json.dumps(r) for r in _all_records(data)[:9]])
    outputs = {}
    for option in (["--device", "cpu"], ["--devices", "cpu,cpu"]):
        out = tmp_path / f"{option[0]}.jsonl"
        assert main(["predict", "--run", str(run_dir), "--input", str(source), "--output",
                     str(out), "--batch-size", "2", "--buffer-size", "4", *option]) == 0
        outputs[option[0]] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [o["transcript_id"] for o in outputs["--devices"]] == [
        o["transcript_id"] for o in outputs["--device"]]
    np.testing.assert_allclose([o["predicted_expression"] for o in outputs["--devices"]],
                               [o["predicted_expression"] for o in outputs["--device"]],
                               rtol=1e-6, atol=1e-6)


def test_device_options_and_buffer_size_are_checked(run, tmp_path, capsys):
    run_dir, data = run
    source = _write_jsonl(tmp_path / "in.jsonl", [json.dumps(_export_records(data)[0])])
    command = ["predict", "--run", str(run_dir), "--input", str(source), "--output",
               str(tmp_path / "out.jsonl")]
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--device", "cpu", "--devices", "cpu,cpu"])
    assert exit_.value.code == 2
    assert "argument --devices: not allowed with argument --device" in capsys.readouterr().err
    assert main([*command, "--buffer-size", "0"]) == 2
    assert "buffer_size must be at least 1 (got 0)" in capsys.readouterr().err
    assert main([*command, "--devices", "cpu,"]) == 2
    assert "devices 'cpu,': give a device" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"dna_sequence": None}, "missing dna_sequence"),
        ({"dna_sequence": "ACGN" * 24}, None),
        ({"dna_sequence": "acgt" * 24}, None),  # soft-masked bases are bases
        ({"dna_sequence": "ACGU" * 24}, "dna_sequence has invalid characters: 'U'"),
        ({"rna_sequence": "ACGU"}, None),
        ({"rna_sequence": 5}, "rna_sequence must be a string, got int"),
        ({"protein_sequence": "MK*"}, "protein_sequence has invalid characters: '*'"),
        ({"protein_sequence": ""}, None),
        ({"protein_sequence": None}, None),  # null: a non-coding transcript, as in tokenize
        ({"dna_sequence": "A" * (DNA_LENGTH + 7)}, None),  # longer: cropped around the TSS
        ({"dna_sequence": "A" * (DNA_LENGTH - 1)}, f"dna_sequence has length {DNA_LENGTH - 1}, "
         f"shorter than the run's DNA window of {DNA_LENGTH}; export windows of that length "
         "with `isoformer export --run RUN`"),
    ],
)
def test_validate_record(change, problem):
    record = {"dna_sequence": "A" * DNA_LENGTH, "rna_sequence": "ACGT", "protein_sequence": "MK"}
    record.update(change)  # None: the key is there with a JSON null
    assert validate_record(record, ["dna", "rna", "protein"], DNA_LENGTH) == problem


def test_unused_modalities_are_not_checked():
    assert validate_record({"rna_sequence": "ACGT"}, ["rna"], DNA_LENGTH) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message of a machine without CUDA")
def test_a_device_this_machine_lacks_exits_2_without_output(run, tmp_path, capsys):
    run_dir, data = run
    source = _write_jsonl(tmp_path / "in.jsonl", [json.dumps(_export_records(data)[0])])
    code = main(["predict", "--run", str(run_dir), "--input", str(source),
                 "--output", str(tmp_path / "out.jsonl"), "--device", "cuda"])
    assert code == 2
    assert "device 'cuda': no CUDA device is available here" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_bf16_precision_and_batch_size_options(run, tmp_path):
    run_dir, data = run
    records = _export_records(data)
    source = _write_jsonl(tmp_path / "in.jsonl", [json.dumps(r) for r in records])
    outputs = {}
    for precision in ("32", "bf16"):
        out = tmp_path / f"{precision}.jsonl"
        assert main(["predict", "--run", str(run_dir), "--input", str(source), "--output",
                     str(out), "--device", "cpu", "--precision", precision,
                     "--batch-size", "2"]) == 0
        outputs[precision] = [json.loads(line)["predicted_expression"]
                              for line in out.read_text().splitlines()]
    np.testing.assert_allclose(outputs["bf16"], outputs["32"], rtol=0.05, atol=0.05)
