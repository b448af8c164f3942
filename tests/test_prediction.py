"""The one prediction loop: devices and replicas, batch order, inference mode, bf16 autocast, crop
logs."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch
from test_model import random_records, tiny_model

from isoformer.errors import IsoformerError
from isoformer.model import prediction
from isoformer.model.prediction import (
    Predictor,
    predict_records,
    prediction_batches,
    record_length,
    resolve_device,
    resolve_devices,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def test_device_choices():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(IsoformerError, match="'tpu': choose auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    with pytest.raises(IsoformerError, match="'cuda:x': choose"):
        resolve_device("cuda:x")


def test_device_lists():
    cpu = torch.device("cpu")
    assert resolve_devices("cpu") == [cpu]
    assert resolve_devices("cpu,cpu") == resolve_devices(" cpu , cpu") == [cpu, cpu]
    assert resolve_devices(["cpu", torch.device("cpu")]) == [cpu, cpu]
    for spec in ("", "cpu,", "cpu,,cpu", []):
        with pytest.raises(IsoformerError, match="a comma-separated list of them"):
            resolve_devices(spec)
    with pytest.raises(IsoformerError, match="'0': a count of devices must be at least 1"):
        resolve_devices("0")
    with pytest.raises(IsoformerError, match="'tpu': choose"):
        resolve_devices("cpu,tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message of a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    for device in ("cuda", "cuda:1"):
        with pytest.raises(IsoformerError, match="no CUDA device is available here; use --device"):
            resolve_device(device)
    for devices in ("2", "cpu,cuda:0"):  # a count is a count of CUDA devices
        with pytest.raises(IsoformerError, match="no CUDA device is available here"):
            resolve_devices(devices)


def test_batches_are_longest_first_and_cover_every_index_once():
    lengths = [5, 50, 20, 40, 10]
    assert prediction_batches(lengths, 2) == [[1, 3], [2, 4], [0]]
    with pytest.raises(IsoformerError, match="batch_size must be at least 1"):
        prediction_batches(lengths, 0)
    assert record_length({"rna_sequence": "ACGT", "protein_sequence": None}) == 4


def test_length_sorted_batches_predict_as_unsorted_ones_and_single_records():
    model = tiny_model()
    model.set_target_statistics(np.linspace(1, 3, 30), np.linspace(0.5, 2, 30))
    records = random_records(9)  # RNA of 20-200 bases, proteins of 0-40 residues
    lengths = [record_length(r) for r in records]
    assert prediction_batches(lengths, 4) != [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    bucketed = predict_records(model, records, batch_size=4)
    in_input_order = predict_records(model, records, batch_size=4, lengths=[0] * 9)  # stable sort
    one_by_one = predict_records(model, records, batch_size=1)  # no padding at all
    np.testing.assert_allclose(bucketed, one_by_one, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(in_input_order, one_by_one, rtol=1e-5, atol=1e-5)


def _first_batch_waits_for_every_replica(monkeypatch, replicas, fail=None):
    """Spy on `predict_batch`: each replica's first batch waits until every replica holds one (a
    replica that never runs in parallel breaks the barrier); `fail`'s first batch raises."""
    barrier = threading.Barrier(len(replicas), timeout=20)
    seen, lock = [], threading.Lock()
    real_step = prediction.predict_batch

    def spy(model, records):
        with lock:
            first = all(m is not model for m, _ in seen)
            seen.append((model, len(records)))
        if first:
            barrier.wait()
            if model is fail:
                raise RuntimeError("replica failed")
        return real_step(model, records)

    monkeypatch.setattr(prediction, "predict_batch", spy)
    return seen


def test_replicas_on_two_cpus_share_the_batches_and_predict_as_one(monkeypatch):
    records = random_records(10, dna_length=130)  # 10 bp longer than the window: all cropped
    alone = predict_records(tiny_model(), records, batch_size=2)
    replicas = [tiny_model(), tiny_model()]  # the same seed: the same weights
    seen = _first_batch_waits_for_every_replica(monkeypatch, replicas)
    predictor = Predictor(replicas)
    np.testing.assert_allclose(predictor.predict(records, batch_size=2), alone, rtol=1e-6,
                               atol=1e-6)
    assert {id(m) for m, _ in seen} == {id(m) for m in replicas}  # both worked
    assert sorted(n for _, n in seen) == [2] * 5  # every batch once
    assert predictor.crops()["dna_window"].cropped == 10  # summed over the replicas
    predictor.predict(records[:3], batch_size=2)
    assert predictor.crops()["dna_window"].cropped == 13  # and over calls


def test_a_failing_replica_stops_the_prediction_with_its_error(monkeypatch):
    replicas = [tiny_model().train(), tiny_model().train()]
    _first_batch_waits_for_every_replica(monkeypatch, replicas, fail=replicas[1])
    with pytest.raises(RuntimeError, match="replica failed"):
        predict_records(replicas, random_records(8), batch_size=2)
    assert all(model.training for model in replicas)  # modes restored all the same


def test_loop_runs_in_inference_mode_and_restores_train_mode(monkeypatch):
    model = tiny_model().train()
    seen = []
    real_step = prediction.predict_batch

    def spy(model, records):
        seen.append((torch.is_inference_mode_enabled(), model.training, len(records)))
        return real_step(model, records)

    monkeypatch.setattr(prediction, "predict_batch", spy)
    records = random_records(5)
    predictions = predict_records(model, records, batch_size=2)
    assert predictions.shape == (5, 30) and predictions.dtype == np.float32
    assert seen == [(True, False, 2), (True, False, 2), (True, False, 1)]
    assert model.training


def test_bf16_autocast_keeps_the_head_and_the_destandardisation_in_float32(monkeypatch):
    model = tiny_model()
    model.set_target_statistics(np.linspace(1, 3, 30), np.linspace(0.5, 2, 30))
    head_inputs = []
    model.head.mlp.register_forward_hook(lambda module, args, out: head_inputs.append(
        (args[0].dtype, out.dtype, torch.is_autocast_enabled("cpu"))))
    records = random_records(6)
    full = model.predict(records, batch_size=3)
    half = model.predict(records, batch_size=3, precision="bf16")
    assert head_inputs == [(torch.float32, torch.float32, False)] * 4
    # bfloat16 keeps ~3 significant digits in the encoders; the outputs agree to that.
    np.testing.assert_allclose(half, full, rtol=0.05, atol=0.05)
    assert not np.array_equal(half, full)  # autocast really ran the encoders in bfloat16
    with pytest.raises(IsoformerError, match="precision 'fp8': choose one of 32, bf16"):
        model.predict(records, precision="fp8")


def test_crops_are_logged_once_per_call(caplog):
    model = tiny_model()
    records = random_records(6, dna_length=130)  # 10 bp longer than the model's 120-bp window
    with caplog.at_level(logging.INFO, logger="isoformer"):
        model.predict(records, batch_size=2)
    lines = [r.getMessage() for r in caplog.records if "cropped" in r.getMessage()]
    assert lines == ["predicting 6 records: dna_window cropped 6 of 6 sequences (60 bp removed)"]


@pytest.mark.gpu
def test_predictions_on_a_gpu_match_the_cpu():
    """Run with `pytest -m gpu` on a machine with CUDA."""
    records = random_records(8)
    model = tiny_model()
    model.set_target_statistics(np.linspace(1, 3, 30), np.linspace(0.5, 2, 30))
    on_cpu = model.predict(records, batch_size=4)
    model.to(resolve_device("cuda"))
    np.testing.assert_allclose(model.predict(records, batch_size=4), on_cpu, rtol=1e-4, atol=1e-4)
    half = model.predict(records, batch_size=4, precision="bf16")
    np.testing.assert_allclose(half, on_cpu, rtol=0.05, atol=0.05)
    assert model.target_mean.dtype == torch.float32
