"""IsoFormer: one encoder per modality -> aggregation -> head, with no loss (see `training/`).

    model = IsoFormer.from_config(load_preset("tiny").model)
    batch = model.tokenize(records)          # records: dicts with dna/rna/protein_sequence
    output = model(batch)                    # output.predictions [B, T], standardised space
    model.save_pretrained("run/model")
    model = IsoFormer.from_pretrained("run", device="auto")  # a save_pretrained dir or a run
    log1p_tpm = model.predict(records)       # [N, T] numpy, log(1 + TPM)

Precision: the encoders and the fusion run in whatever dtype and autocast the caller chose
(Lightning's `bf16-true`, `64-true`, inference under bf16 autocast); the head and the target
statistics are kept at least float32 through every `.to()` and run outside autocast, so the
predictions and their de-standardisation keep full precision.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PretrainedConfig

from isoformer import __version__
from isoformer.constants import EMBEDDINGS, SEQUENCE_KEYS
from isoformer.encoders.base import CropCounts, EncoderOutput, SequenceEncoder, crop_sequence
from isoformer.encoders.registry import build_encoder
from isoformer.errors import IsoformerError
from isoformer.files import atomic_output, write_json_atomic
from isoformer.model.aggregation import build_aggregator
from isoformer.model.config import ModelConfig, config_to_dict, model_config_from_dict
from isoformer.model.head import IsoFormerHead
from isoformer.model.prediction import InferencePrecision, predict_records, resolve_device

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# What a too-long input keeps, per modality, when its encoder config leaves `crop` unset.
DEFAULT_CROPS = {"dna": "center", "rna": "end", "protein": "start"}
# DNA encoders that read a fixed window: it defaults to the model's dna_length.
FIXED_WINDOW_KINDS = ("enformer", "borzoi")
# Bookkeeping fields of a transformers config that are not architecture.
_CONFIG_META_KEYS = ("architectures", "transformers_version", "_name_or_path", "model_type",
                     "torch_dtype", "dtype", "auto_map")

Record = dict[str, Any]
Batch = dict[str, dict[str, Any]]


@dataclass
class IsoFormerOutput:
    predictions: torch.Tensor  # [B, T], standardised per tissue when the config says so
    fused: dict[str, EncoderOutput]  # per query modality: hidden [B, L_q, D_q], mask [B, L_q]
    attentions: dict[str, list[torch.Tensor]] | None = None  # "q->k": per layer [B, H, L_q, L_k]


def resolve_model_config(config: ModelConfig) -> ModelConfig:
    """A copy of `config` with each enabled modality's crop default and the DNA window filled in."""
    config = copy.deepcopy(config)
    for modality in config.modalities:
        encoder = config.encoders[modality]
        if encoder.crop is None:
            encoder.crop = DEFAULT_CROPS[modality]  # type: ignore[assignment]
        if (modality == "dna" and encoder.kind in FIXED_WINDOW_KINDS
                and encoder.max_length is None and config.dna_length is not None):
            encoder.max_length = config.dna_length
    return config


def encoder_architecture(encoder: SequenceEncoder) -> dict[str, Any]:
    """The built encoder's full architecture, so it can be rebuilt with `init="random"` and then
    receive saved weights, whatever the checkpoint it was first loaded from."""
    for module in encoder.modules():
        model_config = getattr(module, "config", None)
        if isinstance(model_config, PretrainedConfig):
            architecture = model_config.to_diff_dict()
            for key in _CONFIG_META_KEYS:
                architecture.pop(key, None)
            return architecture
    raise IsoformerError(f"{encoder.config.kind}: cannot record the architecture of this encoder")


def unique_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module.state_dict()` with every shared tensor once, under its first name.

    enformer-pytorch registers its trunk twice (`_trunk.*` and `stem.*`, `conv_tower.*`, ...);
    safetensors' own save_model/load_model disagree on those aliases, so we pick them here.
    """
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    unique = {}
    for name, tensor in module.state_dict().items():
        storage = tensor.untyped_storage().data_ptr()
        identity = (storage, tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and identity in seen:
            continue
        seen.add(identity)
        unique[name] = tensor.contiguous()
    return unique


def pool_tokens(output: EncoderOutput, max_tokens: int) -> EncoderOutput:
    """Each row's valid tokens, in order, average-pooled (adaptively) to at most `max_tokens`;
    rows with fewer keep theirs. hidden [B, L, D], mask [B, L] -> [B, <= max_tokens, D]."""
    rows = []
    for hidden, mask in zip(output.hidden, output.mask):
        valid = hidden[mask]  # [l, D]
        if len(valid) > max_tokens:
            valid = F.adaptive_avg_pool1d(valid.T.unsqueeze(0), max_tokens)[0].T
        rows.append(valid)
    hidden = output.hidden
    return pad_token_states(rows, hidden.dtype, hidden.device, hidden.shape[-1])


def pad_token_states(rows: Sequence[torch.Tensor], dtype: torch.dtype, device: torch.device,
                     width: int) -> EncoderOutput:
    """Per-row token states [l_i, D] -> padded hidden [B, max l_i (at least 1), D] and mask."""
    length = max([1, *(len(row) for row in rows)])
    hidden = torch.zeros(len(rows), length, width, dtype=dtype, device=device)
    mask = torch.zeros(len(rows), length, dtype=torch.bool, device=device)
    for index, row in enumerate(rows):
        hidden[index, : len(row)] = row
        mask[index, : len(row)] = True
    return EncoderOutput(hidden=hidden, mask=mask)


class IsoFormer(nn.Module):
    """Encoders (one per enabled modality) -> aggregation -> head -> one value per tissue."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config = resolve_model_config(config)
        self.config = config
        self.encoders = nn.ModuleDict(
            {m: build_encoder(config.encoders[m]) for m in config.modalities}
        )
        self._check_dna_window()
        self.aggregator = build_aggregator(
            config.aggregation, {m: encoder.output_dim for m, encoder in self.encoders.items()}
        )
        self.head = IsoFormerHead(config.head, self.aggregator.output_dims, len(config.tissues))
        # Per-tissue statistics of the training targets (log(1 + TPM)); identity until set.
        self.register_buffer("target_mean", torch.zeros(len(config.tissues)))
        self.register_buffer("target_std", torch.ones(len(config.tissues)))
        # DNA windows longer than dna_length, cropped to it by `tokenize`.
        self.dna_window_crops = CropCounts("bp")

    @classmethod
    def from_config(cls, config: ModelConfig) -> IsoFormer:
        """Build fresh: each encoder random or from its pre-trained checkpoint, as configured."""
        return cls(config)

    def _check_dna_window(self) -> None:
        encoder = self.encoders["dna"] if "dna" in self.encoders else None
        length = self.config.dna_length
        if (encoder is not None and length is not None
                and self.config.encoders["dna"].kind in FIXED_WINDOW_KINDS
                and encoder.max_length > length):
            raise IsoformerError(
                f"model: the {self.config.encoders['dna'].kind} DNA encoder reads "
                f"{encoder.max_length}-bp windows but model.dna_length is {length}"
            )

    @property
    def tissues(self) -> list[str]:
        return list(self.config.tissues)

    @property
    def device(self) -> torch.device:
        return self.target_mean.device

    def _full_precision_tensors(self) -> dict[str, torch.Tensor]:
        """The head's weights and the target statistics, which no cast narrows (`_apply`)."""
        tensors = {f"head.{name}": p for name, p in self.head.named_parameters()}
        return {**tensors, "target_mean": self.target_mean, "target_std": self.target_std}

    def _apply(self, fn: Any, recurse: bool = True) -> IsoFormer:
        # Every move or cast (`.to`, `.half()`, Lightning's bf16-true) goes through here. A cast
        # below float32 would round the head and the target statistics, so they are put back from
        # the values held before it, on the new device; a widening cast (64-true) is kept.
        before = {name: t.data for name, t in self._full_precision_tensors().items()}
        super()._apply(fn, recurse)
        for name, tensor in self._full_precision_tensors().items():
            narrowed = tensor.dtype in (torch.float16, torch.bfloat16)
            if narrowed and tensor.dtype != before[name].dtype:
                tensor.data = before[name].to(tensor.device)
        return self

    def crop_counts(self) -> dict[str, CropCounts]:
        """Crops so far (copies): "dna_window" (to `dna_length`), then each encoder's own."""
        counts = {"dna_window": self.dna_window_crops} if "dna" in self.encoders else {}
        counts.update({m: encoder.crops for m, encoder in self.encoders.items()})
        return {name: dataclasses.replace(count) for name, count in counts.items()}

    # ---- inputs and outputs ----

    def tokenize(self, records: Sequence[Record]) -> Batch:
        """Records -> {"inputs": modality -> encoder inputs, "present": modality -> [B] bool}.

        A missing, None or empty sequence marks that modality absent for the record (e.g. the
        protein of a non-coding transcript); encoders raise on invalid sequences. DNA windows go
        through `fit_dna_windows` first. Records that carry a modality's encoder output (an
        embedding cache's `EMBEDDINGS` entry, [L, D]) skip its encoder: the inputs are then
        `{"cached_hidden": [B, L, D] float32, "cached_mask": [B, L]}`.
        """
        inputs, present = {}, {}
        for modality, encoder in self.encoders.items():
            sequences = [record.get(SEQUENCE_KEYS[modality]) or "" for record in records]
            present[modality] = torch.tensor([len(s) > 0 for s in sequences], dtype=torch.bool)
            cached = [(record.get(EMBEDDINGS) or {}).get(modality) for record in records]
            if any(state is not None for state in cached):
                inputs[modality] = self._cached_inputs(modality, sequences, cached)
                continue
            if modality == "dna":
                sequences = self.fit_dna_windows(sequences)
            inputs[modality] = encoder.tokenize(sequences)
        return {"inputs": inputs, "present": present}

    def _cached_inputs(self, modality: str, sequences: Sequence[str],
                       cached: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Cached encoder outputs of one modality -> padded inputs; every record holding its
        sequence must carry one (a batch is either cached or encoded)."""
        if any(state is None and sequence for state, sequence in zip(cached, sequences)):
            raise IsoformerError(
                f"a batch mixes cached and uncached {modality} records; an embedding cache must "
                "hold every record of the batch"
            )
        width = self.encoders[modality].output_dim
        rows = [torch.from_numpy(np.asarray(state, dtype=np.float32)) if state is not None
                else torch.zeros(0, width) for state in cached]
        output = pad_token_states(rows, torch.float32, torch.device("cpu"), width)
        return {"cached_hidden": output.hidden, "cached_mask": output.mask}

    def fit_dna_windows(self, windows: Sequence[str]) -> list[str]:
        """TSS-centred windows at `config.dna_length` bp (none set: unchanged).

        A longer window (e.g. exported from a dataset built at a wider window) is cropped around
        its centre: its TSS, at index len // 2, lands at dna_length // 2, so the crop equals the
        window extracted at dna_length. Crops are counted in `dna_window_crops`. A shorter window
        lacks context the model was trained with: an error.
        """
        length = self.config.dna_length
        if length is None:
            return list(windows)
        for index, window in enumerate(windows):
            if len(window) < length:
                raise IsoformerError(
                    f"DNA window {index} has {len(window)} bp, shorter than the model's "
                    f"{length}-bp window (export windows of that length, e.g. `isoformer export "
                    "--run RUN`)"
                )
        kept = [crop_sequence(window, length, "center") for window in windows]
        self.dna_window_crops.record(windows, kept)
        return kept

    def encode(self, batch: Batch) -> dict[str, EncoderOutput]:
        """Each modality's token states as the fusion sees them: the encoder's output pooled to
        `pool_tokens` when set, or the cached states the batch carries (already pooled)."""
        embeddings = {}
        for modality, encoder in self.encoders.items():
            inputs = batch["inputs"][modality]
            if "cached_hidden" in inputs:
                # In the dtype the encoder itself would have returned (bf16-true, 64-true).
                dtype = next(encoder.parameters()).dtype
                embeddings[modality] = EncoderOutput(inputs["cached_hidden"].to(dtype),
                                                     inputs["cached_mask"])
                continue
            embeddings[modality] = self._pooled(encoder(inputs))
        return embeddings

    def _pooled(self, output: EncoderOutput) -> EncoderOutput:
        if self.config.pool_tokens is None:
            return output
        return pool_tokens(output, self.config.pool_tokens)

    def encode_sequences(self, modality: str, sequences: Sequence[str]) -> EncoderOutput:
        """One modality's sequences -> its encoder's states as the fusion sees them (pooled when
        configured), on this model's device; what an embedding cache stores."""
        if modality == "dna":
            sequences = self.fit_dna_windows(sequences)
        encoder = self.encoders[modality]
        inputs = {name: tensor.to(self.device) for name, tensor in
                  encoder.tokenize(sequences).items()}
        return self._pooled(encoder(inputs))

    def forward(self, batch: Batch, output_attentions: bool = False) -> IsoFormerOutput:
        embeddings = self.encode(batch)
        aggregated = self.aggregator(embeddings, batch["present"], output_attentions)
        with torch.autocast(device_type=self.device.type, enabled=False):
            predictions = self.head(aggregated.fused)  # [B, T], float32 at least
        return IsoFormerOutput(predictions=predictions, fused=aggregated.fused,
                               attentions=aggregated.attentions)

    # ---- target standardisation ----

    def set_target_statistics(self, mean: Any, std: Any) -> None:
        """Per-tissue mean and std [T] of the training split's log(1 + TPM) targets."""
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32))
        expected = (len(self.config.tissues),)
        if mean_t.shape != expected or std_t.shape != expected:
            raise IsoformerError(f"target statistics must have shape {expected}, got "
                                 f"{tuple(mean_t.shape)} and {tuple(std_t.shape)}")
        if not (torch.isfinite(mean_t).all() and torch.isfinite(std_t).all() and (std_t > 0).all()):
            raise IsoformerError("target statistics must be finite with std > 0")
        self.target_mean.copy_(mean_t)
        self.target_std.copy_(std_t)

    def from_log1p(self, targets: torch.Tensor) -> torch.Tensor:
        """log(1 + TPM) [B, T] -> the model's training space."""
        if not self.config.standardize_targets:
            return targets
        return (targets - self.target_mean) / self.target_std

    def to_log1p(self, predictions: torch.Tensor) -> torch.Tensor:
        """The model's training space [B, T] -> log(1 + TPM)."""
        if not self.config.standardize_targets:
            return predictions
        return predictions * self.target_std + self.target_mean

    def predict(self, records: Sequence[Record], batch_size: int = 32,
                precision: InferencePrecision = "32", progress: bool = False) -> np.ndarray:
        """log(1 + TPM) predictions [N, T] (float32), in the order of `records`, on this model's
        device (see `isoformer.model.prediction.predict_records`)."""
        return predict_records(self, records, batch_size=batch_size, precision=precision,
                               progress=progress)

    # ---- saving and loading ----

    def portable_config(self) -> ModelConfig:
        """This model's config with every pre-trained encoder's architecture written out, so
        `from_pretrained` can rebuild it offline (init stays "pretrained" as provenance)."""
        config = copy.deepcopy(self.config)
        for modality, encoder in self.encoders.items():
            if config.encoders[modality].init == "pretrained":
                config.encoders[modality].architecture = encoder_architecture(encoder)
        return config

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write `model.safetensors` (every weight and the target statistics) and `config.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = unique_state_dict(self)
        with atomic_output(directory / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        description = {
            "isoformer_version": __version__,
            "model": config_to_dict(self.portable_config()),
            "tissues": self.tissues,
            "target_statistics": {"mean": self.target_mean.tolist(),
                                  "std": self.target_std.tolist()},
        }
        write_json_atomic(description, directory / CONFIG_FILE)
        logger.info("saved IsoFormer (%d parameters) to %s",
                    sum(p.numel() for p in self.parameters()), directory)
        return directory

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> IsoFormer:
        """Load a `save_pretrained` directory, or a training run directory holding one in `model/`.

        Encoders are built with random weights and then receive the saved ones: no Hub access.
        `device`: auto (the GPU when there is one), cpu, cuda or cuda:N.
        """
        device = resolve_device(device)
        path = Path(path)
        directory = next((d for d in (path, path / "model") if (d / CONFIG_FILE).is_file()
                          and (d / WEIGHTS_FILE).is_file()), None)
        if directory is None:
            raise IsoformerError(
                f"{path}: no saved model ({CONFIG_FILE} + {WEIGHTS_FILE}, here or in model/); "
                "train one with `isoformer train` or write one with save_pretrained"
            )
        try:
            description = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
            saved_config = model_config_from_dict(description["model"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise IsoformerError(
                f"{directory / CONFIG_FILE}: not an IsoFormer config ({error})"
            ) from None
        offline = copy.deepcopy(saved_config)
        for modality in offline.modalities:
            offline.encoders[modality] = dataclasses.replace(
                offline.encoders[modality], init="random"
            )
        model = cls(offline)
        model.config = resolve_model_config(saved_config)
        weights = directory / WEIGHTS_FILE
        state = load_file(weights)
        expected = unique_state_dict(model)
        missing = [name for name in expected if name not in state]
        unexpected = [name for name in state if name not in expected]
        wrong_shape = [name for name in expected if name in state
                       and state[name].shape != expected[name].shape]
        if missing or unexpected or wrong_shape:
            raise IsoformerError(
                f"{weights}: weights do not fit the saved config (missing: {missing[:3]}, "
                f"unexpected: {unexpected[:3]}, wrong shapes: {wrong_shape[:3]})"
            )
        # Not strict: the aliases left out by unique_state_dict share storage with loaded tensors.
        model.load_state_dict(state, strict=False)
        model.to(device)
        if description.get("isoformer_version") != __version__:
            logger.info("%s was saved by isoformer %s (this is %s)", directory,
                        description.get("isoformer_version"), __version__)
        return model
