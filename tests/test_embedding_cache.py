"""The frozen-encoder embedding cache: storage, `embed`, and training / evaluation from it."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from isoformer.cli import main
from isoformer.data.dataset import TranscriptDataset
from isoformer.data.export import export_jsonl
from isoformer.data.schema import TRANSCRIPTS_FILE
from isoformer.encoders.base import EncoderOutput
from isoformer.encoders.embedding_cache import (
    CACHE_FILE,
    CacheWriter,
    EmbeddingCache,
    sequence_key,
)
from isoformer.errors import IsoformerError
from isoformer.model.isoformer import pool_tokens
from isoformer.training.embed import attach_cached_states, embed
from isoformer.training.evaluate import evaluate_run
from isoformer.training.fit import resolve_config, seeded_model, train
from isoformer.training.predict import predict_file
from tiny_dataset import TINY_OVERRIDES, write_tiny_dataset

# Every encoder frozen and nothing random in training, so cached and encoded runs can agree.
FROZEN = [*TINY_OVERRIDES, "training.dna_shift=0", "model.head.dropout=0",
          *(f"model.encoders.{m}.train_mode=frozen" for m in ("dna", "rna", "protein"))]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The tiny dataset with isoform 1 of gene 2 moved onto isoform 0's TSS: one shared window."""
    data = write_tiny_dataset(tmp_path_factory.mktemp("data"))
    table = pl.read_parquet(data / TRANSCRIPTS_FILE)
    shared_tss = table.filter(pl.col("transcript_id") == "ENST000020.1")["tss"][0]
    table = table.with_columns(
        pl.when(pl.col("transcript_id") == "ENST000021.1").then(shared_tss)
        .otherwise(pl.col("tss")).alias("tss")
    )
    table.write_parquet(data / TRANSCRIPTS_FILE)
    return data


@pytest.fixture(scope="module")
def cache(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("caches") / "cache"
    embed(data, "tiny", out, overrides=FROZEN, progress=False)
    return out


def test_states_round_trip_in_both_storage_types_and_keys_ending_in_zero_bytes(tmp_path):
    states = torch.tensor([[1.0, -2.5], [0.375, 1024.0]])  # exact in float16 and bfloat16
    key = b"\x01" + b"\x00" * 31  # numpy bytes arrays would drop these trailing zeros
    for dtype in ("float16", "bfloat16"):
        writer = CacheWriter.create(tmp_path / dtype, {"encoders": {"rna": {}}, "dtype": dtype})
        writer.add("rna", key, states)
        writer.add("rna", sequence_key("acgt"), states[:1])
        writer.flush()
        cache = EmbeddingCache.open(tmp_path / dtype)
        np.testing.assert_array_equal(cache.get("rna", key), states.numpy())
        np.testing.assert_array_equal(cache.get("rna", sequence_key("ACGT")), states[:1].numpy())
        assert cache.get("rna", sequence_key("ACGA")) is None


def test_pool_tokens_averages_valid_tokens_in_order():
    hidden = torch.tensor([[[1.0], [2.0], [3.0], [4.0]], [[5.0], [6.0], [0.0], [0.0]]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    pooled = pool_tokens(EncoderOutput(hidden, mask), 2)
    assert pooled.hidden[:, :, 0].tolist() == [[1.5, 3.5], [5.0, 6.0]]
    assert pooled.mask.all()
    pooled = pool_tokens(EncoderOutput(hidden, mask), 3)  # the short row keeps its 2 tokens
    assert pooled.mask.tolist() == [[True, True, True], [True, True, False]]


def test_one_entry_per_distinct_input_and_states_equal_the_encoders(data, cache):
    dataset = TranscriptDataset(data)
    windows = {(c, s, t) for c, s, t in zip(dataset.chroms, dataset.strands, dataset.tss)}
    opened = EmbeddingCache.open(cache)
    assert opened.entries("dna") == len(windows) == len(dataset) - 1  # one TSS shared
    assert opened.entries("rna") == len(set(dataset.rna))
    assert opened.entries("protein") == len({p for p in dataset.protein if p})

    model = seeded_model(resolve_config(data, "tiny", FROZEN)).eval()
    item = dataset[3]
    with torch.inference_mode():
        for modality, key in (("rna", "rna_sequence"), ("dna", "dna_sequence")):
            output = model.encode_sequences(modality, [item[key]])
            expected = output.hidden[0][output.mask[0]].numpy()
            cached = opened.get(modality, sequence_key(item[key]))
            np.testing.assert_allclose(cached, expected, rtol=1e-3, atol=1e-3)  # float16


def test_an_interrupted_embed_resumes_with_only_the_missing_shards(data, tmp_path):
    out = tmp_path / "cache"
    first = embed(data, "tiny", out, overrides=FROZEN, shard_bytes=2000, progress=False)
    assert first.computed == first.entries
    description = json.loads((out / CACHE_FILE).read_text())
    lost = description["shards"]["rna"].pop()  # as if killed before the last rna shard landed
    (out / CACHE_FILE).write_text(json.dumps(description))
    again = embed(data, "tiny", out, overrides=FROZEN, shard_bytes=2000, progress=False)
    assert again.computed == {"dna": 0, "rna": lost["entries"], "protein": 0}
    assert again.entries == first.entries


def test_cached_and_encoded_training_reach_the_same_validation_loss(data, cache, tmp_path):
    encoded = train(data, "tiny", tmp_path / "encoded", overrides=FROZEN, max_epochs=2,
                    progress=False)
    cached = train(data, "tiny", tmp_path / "cached", overrides=FROZEN, max_epochs=2,
                   progress=False, cache=cache)
    loss = {name: json.loads((run.directory / "training.json").read_text())
            for name, run in (("encoded", encoded), ("cached", cached))}
    assert loss["cached"]["best_val_loss"] == pytest.approx(loss["encoded"]["best_val_loss"],
                                                            rel=1e-3)
    assert loss["cached"]["embedding_cache"]["modalities"] == ["dna", "rna", "protein"]
    assert loss["encoded"]["embedding_cache"] is None

    with_cache = evaluate_run(cached, data, split="test", cache=cache, progress=False)
    without = evaluate_run(cached, data, split="test", progress=False)
    assert with_cache["mean"]["r2"] == pytest.approx(without["mean"]["r2"], abs=1e-3)

    # predict: records the cache holds read it, the one it lacks runs the encoders
    records = tmp_path / "records.jsonl"
    export_jsonl(data, records, split="test", dna_length=cached.dna_length)
    lines = records.read_text().splitlines()
    novel = json.loads(lines[0])
    novel["rna_sequence"] = novel["rna_sequence"][:-1]  # not in the cache
    records.write_text("\n".join([json.dumps(novel), *lines[1:]]) + "\n")
    inputs = [json.loads(line) for line in records.read_text().splitlines()]
    assert attach_cached_states(inputs, EmbeddingCache.open(cache)) == len(inputs) - 1
    predicted = {}
    for name, option in (("cached", cache), ("encoded", None)):
        predict_file(cached, records, tmp_path / f"{name}.jsonl", devices="cpu", cache=option,
                     progress=False)
        predicted[name] = [json.loads(line)["predicted_expression"]
                           for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(predicted["cached"], predicted["encoded"], atol=1e-3)


@pytest.mark.parametrize("override, field", [
    ("model.encoders.rna.hidden_layer=1", "encoders.rna.hidden_layer"),
    ("training.seed=1", "encoders.dna.weights_sha256"),
    ("model.dna_length=64", "dna_length"),
    ("model.pool_tokens=4", "pool_tokens"),
])
def test_a_cache_for_another_model_is_refused_naming_the_difference(data, cache, tmp_path,
                                                                     override, field):
    with pytest.raises(IsoformerError, match=field.replace(".", r"\.")):
        train(data, "tiny", tmp_path / "run", overrides=[*FROZEN, override], max_epochs=1,
              progress=False, cache=cache)


def test_a_cache_for_other_data_is_refused(data, cache, tmp_path):
    other = write_tiny_dataset(tmp_path / "other", seed=1)
    with pytest.raises(IsoformerError, match=r"dataset\.transcripts_sha256"):
        train(other, "tiny", tmp_path / "run", overrides=FROZEN, max_epochs=1, progress=False,
              cache=cache)


def test_a_pooled_cache_holds_at_most_k_tokens_and_records_the_pooling(data, tmp_path, capsys):
    out = tmp_path / "pooled"
    code = main(["embed", "--data", str(data), "--out", str(out), "--tokens", "3",
                 "--no-progress", *FROZEN])
    assert code == 0
    assert "cache written to" in capsys.readouterr().out
    cache = EmbeddingCache.open(out)
    assert cache.header["pool_tokens"] == 3
    for modality in cache.modalities:
        for shard in cache.shards[modality]:
            offsets = np.load(out / modality / f"{shard['name']}.offsets.npy")
            assert np.diff(offsets).max() <= 3
    run = train(data, "tiny", tmp_path / "run", overrides=[*FROZEN, "model.pool_tokens=3"],
                max_epochs=1, progress=False, cache=out)
    assert run.config.model.pool_tokens == 3


def test_only_frozen_encoders_are_cached_and_a_config_without_one_is_refused(data, tmp_path):
    trainable_rna = [o for o in FROZEN if "rna.train_mode" not in o]
    summary = embed(data, "tiny", tmp_path / "partial", overrides=trainable_rna, progress=False)
    assert set(summary.entries) == {"dna", "protein"}
    run = train(data, "tiny", tmp_path / "run", overrides=trainable_rna, max_epochs=1,
                progress=False, cache=tmp_path / "partial")  # RNA still runs its encoder
    assert (run.directory / "model" / "model.safetensors").is_file()
    with pytest.raises(IsoformerError, match="no encoder of this config is frozen"):
        embed(data, "tiny", tmp_path / "none", overrides=TINY_OVERRIDES, progress=False)


def test_a_dna_shift_with_cached_dna_is_refused(data, cache, tmp_path):
    with pytest.raises(IsoformerError, match="dna_shift must be 0"):
        train(data, "tiny", tmp_path / "run", overrides=[*FROZEN, "training.dna_shift=3"],
              max_epochs=1, progress=False, cache=cache)


def test_embed_refuses_when_the_disk_lacks_room(data, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 10))
    with pytest.raises(IsoformerError, match="disk has"):
        embed(data, "tiny", tmp_path / "cache", overrides=FROZEN, progress=False)
    assert not list((tmp_path / "cache").rglob("*.npy"))
