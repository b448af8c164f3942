"""On-disk cache of frozen encoders' token states, one entry per distinct input sequence.

CACHE/
  cache.json                      what the cache was built for (`header`: encoders with their
                                  weights' sha256, hidden layer, crop rule and window, token
                                  pooling, storage dtype, dataset) and its finished shards
  <modality>/shard-NNNNN.states.npy   [tokens, D] float16 (or bfloat16 bits as uint16): the
                                  entries' valid token states, one after another
  <modality>/shard-NNNNN.offsets.npy  [entries + 1] int64: entry i is states[offsets[i]:
                                  offsets[i + 1]]
  <modality>/shard-NNNNN.keys.npy     [entries, 32] uint8: sha256 of each entry's input sequence

Why numpy `.npy` shards: `np.load(mmap_mode="r")` memory-maps them, so a training step reads
only its batch's rows and a cache larger than RAM works; a shard is written whole (temporary
name, then rename) and only then listed in cache.json, so an interrupted `embed` loses at most
the shard it was filling and resumes from the listed ones. Variable-length entries need only the
offsets table, which zarr or safetensors would need too, and numpy adds no dependency. numpy has
no bfloat16: those states are stored as their 16 bits and widened exactly on read.

The key of an entry is the sha256 of the sequence (upper case) the encoder reads: isoforms that
share a TSS share one DNA entry. What the encoder is (config, weights, window) lives in the
header, which a user of the cache must match exactly (`describe_differences`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from isoformer.errors import IsoformerError
from isoformer.files import atomic_output, write_json_atomic
from isoformer.typed_config import differing_keys

CACHE_FILE = "cache.json"
FORMAT_VERSION = 1
STATE_DTYPES = ("float16", "bfloat16")
DEFAULT_SHARD_BYTES = 256 * 2**20


def sequence_key(sequence: str) -> bytes:
    """The cache key of one encoder input: sha256 of the sequence in upper case (soft-masked
    genome bases are ordinary bases to every encoder)."""
    return hashlib.sha256(sequence.upper().encode()).digest()


def to_storage(states: torch.Tensor, dtype: str) -> np.ndarray:
    """[L, D] float states -> the stored array (float16, or bfloat16 bits as uint16)."""
    if dtype == "float16":
        return states.detach().to(torch.float16).cpu().numpy()
    return states.detach().to(torch.bfloat16).view(torch.int16).cpu().numpy().view(np.uint16)


def from_storage(stored: np.ndarray, dtype: str) -> np.ndarray:
    """Stored rows -> float32 (bfloat16 bits widen exactly by a 16-bit shift)."""
    if dtype == "float16":
        return stored.astype(np.float32)
    return (stored.astype(np.uint32) << 16).view(np.float32)


def describe_differences(built: dict[str, Any], wanted: dict[str, Any]) -> str:
    """One line naming each differing field with the cache's and the wanted value."""
    parts = []
    for name in differing_keys(built, wanted):
        have, want = _lookup(built, name), _lookup(wanted, name)
        if name.endswith("weights_sha256"):
            have, want = str(have)[:12], str(want)[:12]  # the digest's start is enough to see
        parts.append(f"{name}: cache {have!r}, wanted {want!r}")
    return "; ".join(parts)


def _lookup(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data


@dataclass
class Shard:
    states: np.ndarray  # memory-mapped [tokens, D]
    offsets: np.ndarray  # [entries + 1]


@dataclass
class EmbeddingCache:
    """A cache directory opened for reading (and, by `CacheWriter`, for appending)."""

    directory: Path
    header: dict[str, Any]
    shards: dict[str, list[dict[str, Any]]]  # modality -> [{"name", "entries", "tokens"}]
    index: dict[str, dict[bytes, tuple[int, int]]] = field(default_factory=dict)
    _open: dict[tuple[str, int], Shard] = field(default_factory=dict)

    @classmethod
    def open(cls, directory: str | Path) -> EmbeddingCache:
        directory = Path(directory)
        path = directory / CACHE_FILE
        if not path.is_file():
            raise IsoformerError(f"{directory}: not an embedding cache (no {CACHE_FILE}); "
                                 "build one with `isoformer embed`")
        try:
            description = json.loads(path.read_text(encoding="utf-8"))
            header, shards = description["header"], description["shards"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise IsoformerError(f"{path}: not an embedding cache description ({error})") from None
        if header.get("format_version") != FORMAT_VERSION:
            raise IsoformerError(f"{path}: cache format {header.get('format_version')}, this "
                                 f"isoformer reads {FORMAT_VERSION}; rebuild it with `embed`")
        cache = cls(directory, header, shards)
        for modality, listed in shards.items():
            index = cache.index.setdefault(modality, {})
            for number, shard in enumerate(listed):
                keys = np.load(cache._path(modality, shard["name"], "keys"))
                index.update((key.tobytes(), (number, row)) for row, key in enumerate(keys))
        return cache

    @property
    def modalities(self) -> list[str]:
        return list(self.header["encoders"])

    @property
    def dtype(self) -> str:
        return self.header["dtype"]

    def _path(self, modality: str, name: str, part: str) -> Path:
        return self.directory / modality / f"{name}.{part}.npy"

    def __contains__(self, item: tuple[str, bytes]) -> bool:
        modality, key = item
        return key in self.index.get(modality, {})

    def entries(self, modality: str) -> int:
        return len(self.index.get(modality, {}))

    def get(self, modality: str, key: bytes) -> np.ndarray | None:
        """The entry's token states [L, D] as float32, or None when the cache lacks it."""
        location = self.index.get(modality, {}).get(key)
        if location is None:
            return None
        number, row = location
        shard = self._shard(modality, number)
        start, end = shard.offsets[row], shard.offsets[row + 1]
        return from_storage(np.asarray(shard.states[start:end]), self.dtype)

    def _shard(self, modality: str, number: int) -> Shard:
        if (modality, number) not in self._open:
            name = self.shards[modality][number]["name"]
            self._open[modality, number] = Shard(
                np.load(self._path(modality, name, "states"), mmap_mode="r"),
                np.load(self._path(modality, name, "offsets")),
            )
        return self._open[modality, number]

    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.directory.rglob("*.npy"))

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers map the shards themselves; memory maps do not pickle.
        state = self.__dict__.copy()
        state["_open"] = {}
        return state


class CacheWriter:
    """Appends entries to a cache, one whole shard at a time (see the module docstring)."""

    def __init__(self, cache: EmbeddingCache, shard_bytes: int = DEFAULT_SHARD_BYTES):
        self.cache = cache
        self.shard_bytes = shard_bytes
        self._pending: dict[str, list[tuple[bytes, np.ndarray]]] = {}
        self._pending_bytes: dict[str, int] = {}

    @classmethod
    def create(cls, directory: str | Path, header: dict[str, Any],
               shard_bytes: int = DEFAULT_SHARD_BYTES) -> CacheWriter:
        """A new, empty cache for `header` (dtype, encoders, ...) in `directory`."""
        if header["dtype"] not in STATE_DTYPES:
            raise IsoformerError(f"cache dtype {header['dtype']!r}: choose one of "
                                 f"{', '.join(STATE_DTYPES)}")
        cache = EmbeddingCache(Path(directory), {**header, "format_version": FORMAT_VERSION},
                               {modality: [] for modality in header["encoders"]})
        writer = cls(cache, shard_bytes)
        writer._write_description()
        return writer

    def add(self, modality: str, key: bytes, states: torch.Tensor) -> None:
        """Queue one entry's valid token states [L, D]; a full shard is written at once."""
        stored = to_storage(states, self.cache.dtype)
        self._pending.setdefault(modality, []).append((key, stored))
        self._pending_bytes[modality] = self._pending_bytes.get(modality, 0) + stored.nbytes
        if self._pending_bytes[modality] >= self.shard_bytes:
            self.flush(modality)

    def flush(self, modality: str | None = None) -> None:
        """Write the queued entries (of one modality, or all) as new shards."""
        for name in [modality] if modality else list(self._pending):
            entries = self._pending.pop(name, [])
            self._pending_bytes.pop(name, None)
            if entries:
                self._write_shard(name, entries)

    def _write_shard(self, modality: str, entries: list[tuple[bytes, np.ndarray]]) -> None:
        listed = self.cache.shards[modality]
        name = f"shard-{len(listed):05d}"
        lengths = [len(states) for _, states in entries]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        arrays = {
            "states": np.concatenate([states for _, states in entries]),
            "offsets": offsets,
            # uint8 rows, not numpy bytes ("S32"), which drops a digest's trailing zero bytes.
            "keys": np.frombuffer(b"".join(key for key, _ in entries), np.uint8).reshape(-1, 32),
        }
        for part, array in arrays.items():  # keys last: a shard with keys is complete
            with atomic_output(self.cache._path(modality, name, part)) as tmp:
                with tmp.open("wb") as handle:
                    np.save(handle, array)
        listed.append({"name": name, "entries": len(entries), "tokens": int(offsets[-1])})
        number = len(listed) - 1
        index = self.cache.index.setdefault(modality, {})
        index.update((key, (number, row)) for row, (key, _) in enumerate(entries))
        self._write_description()

    def _write_description(self) -> None:
        write_json_atomic({"header": self.cache.header, "shards": self.cache.shards},
                          self.cache.directory / CACHE_FILE)
