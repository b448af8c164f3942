"""`isoformer embed`: run each frozen encoder once per distinct input of a dataset into a cache,
and the dataset view that serves those cached states to training, validation and evaluation.

    embed(data_dir, "tiny", "cache", overrides=["model.encoders.dna.train_mode=frozen"])
    train(data_dir, "tiny", "run", overrides=[...same...], cache="cache")

Only encoders with `train_mode: frozen` are cached (a trainable encoder's output changes every
step); the others still run in training. The model is built exactly as `train` builds it (same
preset, overrides and seed), so a random-weight encoder is the same one in both; the cache header
records every encoder's weights hash, and a model that differs in anything the cached states
depend on is refused with the fields named (`check_cache`). Storage: `encoders.embedding_cache`.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import track

from isoformer.constants import EMBEDDINGS, SEQUENCE_KEYS, TRANSCRIPT_ID
from isoformer.data.dataset import TranscriptDataset
from isoformer.encoders.embedding_cache import (
    CACHE_FILE,
    DEFAULT_SHARD_BYTES,
    CacheWriter,
    EmbeddingCache,
    describe_differences,
    sequence_key,
)
from isoformer.errors import IsoformerError
from isoformer.model.config import RunConfig
from isoformer.model.isoformer import IsoFormer, unique_state_dict
from isoformer.training.run import dataset_fingerprint

log = logging.getLogger(__name__)

# Encoder config fields the cached states depend on (train_mode only says that it is frozen).
_IDENTITY_FIELDS = ("kind", "init", "checkpoint", "architecture", "hidden_layer", "max_length",
                    "crop")


def cached_modalities(config: RunConfig) -> list[str]:
    """The enabled modalities whose encoder is frozen: what a cache holds."""
    model = config.model
    return [m for m in model.modalities if model.encoders[m].train_mode == "frozen"]


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(unique_state_dict(module).items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_header(model: IsoFormer, modalities: Sequence[str], data_dir: str | Path | None,
                 dtype: str) -> dict[str, Any]:
    """What states cached for `model`'s encoders of `modalities` on this dataset depend on
    (`data_dir` None: everything but the dataset)."""
    config = model.config
    encoders = {}
    for modality in modalities:
        encoder = config.encoders[modality]
        identity = {name: getattr(encoder, name) for name in _IDENTITY_FIELDS}
        identity["output_dim"] = model.encoders[modality].output_dim
        identity["weights_sha256"] = weights_sha256(model.encoders[modality])
        encoders[modality] = identity
    header: dict[str, Any] = {"encoders": encoders, "dna_length": config.dna_length,
                              "pool_tokens": config.pool_tokens, "dtype": dtype}
    if data_dir is not None:
        fingerprint = dataset_fingerprint(data_dir)
        header["dataset"] = {"path": fingerprint["path"],
                             "transcripts_sha256": fingerprint["transcripts_sha256"]}
    return header


def check_cache(cache: EmbeddingCache, model: IsoFormer, data_dir: str | Path | None) -> None:
    """Refuse a cache built for other encoders, weights, layers, windows, pooling or data
    (`data_dir` None, as for `predict`: any data, entries are found by their sequence)."""
    wanted = cache_header(model, cache.modalities, data_dir, cache.dtype)
    built = {key: cache.header.get(key) for key in wanted}
    differences = describe_differences(built, wanted)
    if differences:
        raise IsoformerError(
            f"{cache.directory}: this embedding cache was built for another model or dataset "
            f"({differences}); rebuild it with `isoformer embed` and the same preset, overrides "
            "and seed"
        )


def attach_cached_states(records: Sequence[dict[str, Any]], cache: EmbeddingCache) -> int:
    """Give each record whose every cached modality's input is in `cache` its states
    (`EMBEDDINGS`); the number of records that got them. Others stay as they are."""
    found = 0
    for record in records:
        states = {}
        for modality in cache.modalities:
            sequence = record.get(SEQUENCE_KEYS[modality]) or ""
            if sequence:
                states[modality] = cache.get(modality, sequence_key(sequence))
        if all(state is not None for state in states.values()):
            record[EMBEDDINGS] = states
            found += 1
    return found


class CachedDataset(torch.utils.data.Dataset):
    """A split whose items also carry the cached states of the cache's modalities
    (`EMBEDDINGS`: modality -> [L, D] float32); a record missing from the cache is an error,
    found when the view is made, not in the middle of an epoch."""

    def __init__(self, dataset: TranscriptDataset, cache: EmbeddingCache):
        self.dataset, self.cache = dataset, cache
        self.keys: list[dict[str, bytes]] = []
        missing: dict[str, list[str]] = {}
        for index in range(len(dataset)):
            item = dataset[index]
            keys = {}
            for modality in cache.modalities:
                sequence = item[SEQUENCE_KEYS[modality]] or ""
                if not sequence:
                    continue  # absent (a non-coding transcript's protein): nothing to look up
                keys[modality] = sequence_key(sequence)
                if (modality, keys[modality]) not in cache:
                    missing.setdefault(modality, []).append(item[TRANSCRIPT_ID])
            self.keys.append(keys)
        if missing:
            summary = ", ".join(f"{modality} of {len(ids)} (e.g. {ids[0]})"
                                for modality, ids in missing.items())
            raise IsoformerError(
                f"{cache.directory}: the cache lacks the states of {len(dataset)}-transcript "
                f"split's {summary}; build it on this dataset with `isoformer embed`"
            )

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        item[EMBEDDINGS] = {modality: self.cache.get(modality, key)
                            for modality, key in self.keys[index].items()}
        return item

    def __getattr__(self, name: str) -> Any:
        # Everything else (transcript_ids, rna, targets, sequence_lengths, close, ...) is the
        # split's; "dataset" itself is looked up here only while unpickling, before it is set.
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


@dataclass
class EmbedSummary:
    directory: Path
    entries: dict[str, int]  # per modality, in the cache after this run
    computed: dict[str, int]  # per modality, by this run (0 when it all was there)
    size_bytes: int
    seconds: float


def _pending_inputs(dataset: TranscriptDataset, modalities: Sequence[str],
                    cache: EmbeddingCache) -> dict[str, list[int]]:
    """Per modality, one dataset index per distinct input the cache lacks (first occurrence)."""
    pending: dict[str, list[int]] = {m: [] for m in modalities}
    seen: dict[str, set[bytes]] = {m: set() for m in modalities}
    for index in track(range(len(dataset)), description="hashing inputs", transient=True):
        item = dataset[index]
        for modality in modalities:
            sequence = item[SEQUENCE_KEYS[modality]] or ""
            key = sequence_key(sequence)
            if sequence and key not in seen[modality] and (modality, key) not in cache:
                seen[modality].add(key)
                pending[modality].append(index)
    return pending


def _check_disk(directory: Path, estimate: int) -> None:
    free = shutil.disk_usage(directory).free
    log.info("embedding cache: about %.2f GB to write, %.2f GB free in %s", estimate / 1e9,
             free / 1e9, directory)
    if estimate > free:
        raise IsoformerError(
            f"{directory}: the cache needs about {estimate / 1e9:.2f} GB and the disk has "
            f"{free / 1e9:.2f} GB free; free space, use --tokens K, or choose another --out"
        )


def _embed_modality(model: IsoFormer, dataset: TranscriptDataset, modality: str,
                    indices: list[int], writer: CacheWriter, batch_size: int,
                    progress: bool) -> None:
    """Encode the inputs at `indices` (longest first) and queue their valid states."""
    key_name = SEQUENCE_KEYS[modality]
    lengths = {index: len(dataset.rna[index]) if modality == "rna" else
               len(dataset.protein[index]) if modality == "protein" else 0 for index in indices}
    order = sorted(indices, key=lengths.__getitem__, reverse=True)
    total_units = sum(lengths.values()) if modality != "dna" else len(order)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    steps = track(batches, description=f"embedding {modality}") if progress else batches
    for number, batch in enumerate(steps):
        sequences = [dataset[index][key_name].upper() for index in batch]
        output = model.encode_sequences(modality, sequences)
        written = 0
        for sequence, hidden, mask in zip(sequences, output.hidden, output.mask):
            states = hidden[mask].float()
            written += states.numel() * 2
            writer.add(modality, sequence_key(sequence), states)
        if number == 0:
            # The first batch holds the longest inputs: an upper estimate of bytes per unit.
            units = sum(lengths[index] for index in batch) if modality != "dna" else len(batch)
            _check_disk(writer.cache.directory, int(written / max(units, 1) * total_units))
    writer.flush(modality)


def embed(
    data_dir: str | Path,
    preset: str,
    out: str | Path,
    overrides: Sequence[str] = (),
    tokens: int | None = None,
    dtype: str = "float16",
    batch_size: int | None = None,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
    progress: bool = True,
) -> EmbedSummary:
    """Cache the frozen encoders' states of every transcript of `data_dir` into `out`.

    `tokens`: pool each entry to at most K tokens (sets `model.pool_tokens`, which a training
    run on this cache must share). An `out` holding a cache for the same model and data resumes
    (entries there are kept); one for anything else is refused unless `overwrite`.
    """
    from isoformer.training.fit import resolve_config, seeded_model

    start = time.perf_counter()
    data_dir, out = Path(data_dir), Path(out)
    extra = [f"model.pool_tokens={tokens}"] if tokens is not None else []
    config = resolve_config(data_dir, preset, [*overrides, *extra])
    modalities = cached_modalities(config)
    if not modalities:
        raise IsoformerError(
            "embed: no encoder of this config is frozen, so there is nothing to cache; freeze "
            "the ones to cache, e.g. model.encoders.dna.train_mode=frozen"
        )
    model = seeded_model(config)
    model.eval()
    header = cache_header(model, modalities, data_dir, dtype)
    if (out / CACHE_FILE).exists() and overwrite:
        shutil.rmtree(out)
    if (out / CACHE_FILE).exists():
        cache = EmbeddingCache.open(out)
        check_cache(cache, model, data_dir)
        if cache.header["dtype"] != dtype:
            raise IsoformerError(f"{out}: holds a {cache.header['dtype']} cache; use --dtype "
                                 f"{cache.header['dtype']} to resume it, or --overwrite")
        writer = CacheWriter(cache, shard_bytes)
        log.info("resuming the embedding cache in %s", out)
    else:
        writer = CacheWriter.create(out, header, shard_bytes)
        cache = writer.cache
    before = {m: cache.entries(m) for m in modalities}

    dataset = TranscriptDataset(data_dir, dna_length=config.model.dna_length)
    try:
        pending = _pending_inputs(dataset, modalities, cache)
        log.info("embedding %s (of %d transcripts)",
                 ", ".join(f"{len(pending[m])} new {m} inputs" for m in modalities), len(dataset))
        with torch.inference_mode():
            for modality in modalities:
                _embed_modality(model, dataset, modality, pending[modality], writer,
                                batch_size or config.training.batch_size, progress)
    finally:
        dataset.close()
    entries = {m: cache.entries(m) for m in modalities}
    summary = EmbedSummary(out, entries, {m: entries[m] - before[m] for m in modalities},
                           cache.size_bytes(), time.perf_counter() - start)
    log.info("embedding cache %s: %s; %.1f MB in %.1f s", out,
             ", ".join(f"{m} {entries[m]} entries" for m in modalities),
             summary.size_bytes / 1e6, summary.seconds)
    return summary
