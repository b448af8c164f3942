"""Masked-language-model objectives of the encoders, for `isoformer pretrain`.

One objective per encoder kind, each saving its weights in the layout that kind's loader reads
(`init: pretrained`, `checkpoint: DIR`):

- NT-v2 (`nucleotide_transformer`; DNA windows, RNA): masked 6-mer tokens, predicted by the model's
  own LM head (`NucleotideTransformerForMaskedLM`, i.e. transformers' `EsmForMaskedLM` layout:
  `esm.*` + `lm_head.{dense,layer_norm,decoder,bias}`, as the official checkpoints hold it). Saved
  with `save_pretrained` (config.json + model.safetensors); the loader reads all of it, head
  included.
- ESM-2 (`esm2`; proteins): masked residues, predicted by transformers' `EsmForMaskedLM`, ESM-2's
  own pretraining model (its `token_dropout` rescaling included). Saved with `save_pretrained`;
  the loader reads the `esm.*` backbone and ignores the LM head, as with the Hub checkpoints.
- Enformer (`enformer`; DNA windows): Enformer was trained supervised, not by MLM, so this is our
  own masked-base objective on its one-hot input: bases are hidden (all-zero channels, as an N) or
  replaced, and a linear head on each trunk bin predicts the 4 bases at every position of its bin
  (`EnformerBaseHead`: 2 x dim -> bin_size x 4). The trunk is saved as enformer-pytorch saves it
  (config.json + pytorch_model.bin, the official checkpoint's layout: its parameters are
  registered under two names, which safetensors refuses), the head beside it in
  `mlm_head.safetensors`, which the loader does not read.

Masking (`mask_tokens`, `mask_bases`): BERT / ESM-style, the same for every objective. Each
maskable position is selected with probability `rate` (default 0.15); a selected one becomes the
mask (`<mask>`, or an all-zero base) with probability `mask_share` (0.8), a random token with
`random_share` (0.1), and stays as it is otherwise; the loss and accuracy count selected
positions only. Special tokens (`<cls>`, `<eos>`, `<pad>`, `<unk>`, ...), N tokens and N bases
are never selected. Written here rather than with transformers' `DataCollatorForLanguageModeling`,
which needs a `PreTrainedTokenizer` (ours are built from code, `encoders.tokenizers`) and draws its
random replacements from the whole vocabulary, special tokens included; here random tokens are
regular ones (NT-v2's 4,096 6-mers, ESM-2's 20 standard residues, one of A/C/G/T).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import EsmForMaskedLM

from isoformer.encoders.base import EncoderConfig
from isoformer.encoders.loading import load_checkpoint, require_every_weight
from isoformer.encoders.tokenizers import (
    NT_KMER,
    NucleotideTokenizer,
    ProteinTokenizer,
    one_hot_encode,
    pad_token_ids,
)
from isoformer.errors import IsoformerError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of positions the loss skips (transformers' convention)
HEAD_FILE = "mlm_head.safetensors"  # Enformer's masked-base head, beside the trunk
STANDARD_RESIDUES = "LAGVSERTIDPKQNFYMHWC"
# Official input limits: NT-v2 2,048 tokens with <cls>; ESM-2 1,024 residues + <cls> + <eos>.
NT_MAX_TOKENS = 2048
ESM2_MAX_RESIDUES = 1024
OBJECTIVE_KINDS = ("nucleotide_transformer", "esm2", "enformer")


@dataclass(frozen=True)
class Masking:
    """BERT-style masking rates (see the module docstring)."""

    rate: float = 0.15
    mask_share: float = 0.8
    random_share: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.rate <= 1.0 or self.mask_share < 0 or self.random_share < 0 or (
                self.mask_share + self.random_share > 1.0):
            raise IsoformerError(
                f"masking: rate {self.rate} must lie in (0, 1], mask_share {self.mask_share} and "
                f"random_share {self.random_share} be non-negative with a sum of at most 1"
            )


def _select(maskable: torch.Tensor, masking: Masking, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(selected, to_mask, to_randomise) [same shape as maskable], disjoint, inside maskable."""
    draws = torch.rand(maskable.shape, generator=generator)
    selected = maskable & (draws < masking.rate)
    what = torch.rand(maskable.shape, generator=generator)
    to_mask = selected & (what < masking.mask_share)
    to_randomise = selected & ~to_mask & (what < masking.mask_share + masking.random_share)
    return selected, to_mask, to_randomise


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_token_id: int,
    random_ids: torch.Tensor,
    masking: Masking,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [B, L] -> (masked ids [B, L], labels [B, L]: the original id where selected,
    IGNORE_INDEX elsewhere). `maskable` [B, L] bool; `random_ids`: the ids random replacements are
    drawn from (uniformly)."""
    selected, to_mask, to_randomise = _select(maskable, masking, generator)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    masked = input_ids.clone()
    masked[to_mask] = mask_token_id
    picks = torch.randint(len(random_ids), (int(to_randomise.sum()),), generator=generator)
    masked[to_randomise] = random_ids[picks]
    return masked, labels


def mask_bases(
    one_hot: torch.Tensor, maskable: torch.Tensor, masking: Masking, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot DNA [B, L, 4] -> (masked one-hot [B, L, 4], labels [B, L]: the base index 0-3 of
    A, C, G, T where selected, IGNORE_INDEX elsewhere). A masked base reads as all zeros (an N),
    a randomised one as a random base; N positions are never maskable."""
    maskable = maskable & (one_hot.sum(-1) > 0)
    selected, to_mask, to_randomise = _select(maskable, masking, generator)
    labels = torch.where(selected, one_hot.argmax(-1), torch.full(maskable.shape, IGNORE_INDEX))
    masked = one_hot.clone()
    masked[to_mask] = 0.0
    picks = torch.randint(4, (int(to_randomise.sum()),), generator=generator)
    masked[to_randomise] = F.one_hot(picks, 4).to(one_hot.dtype)
    return masked, labels


@dataclass
class MaskedBatch:
    """A batch ready for an objective: its inputs and the labels of the selected positions."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor  # [B, L], IGNORE_INDEX where nothing is predicted

    def to(self, device: torch.device | str) -> MaskedBatch:
        return MaskedBatch({k: v.to(device) for k, v in self.inputs.items()},
                           self.labels.to(device))


class MlmObjective(nn.Module):
    """An encoder's model with its prediction head: sequences -> masked batch -> logits of the
    selected positions."""

    kind: str
    description: str  # what it predicts, for summaries
    n_classes: int  # output classes (vocabulary or 4 bases)
    max_length: int  # longest input in sequence units (bases, residues)
    unit: str

    def masked_batch(self, sequences: Sequence[str], masking: Masking,
                     generator: torch.Generator) -> MaskedBatch:
        raise NotImplementedError

    def predict(self, batch: MaskedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [N, n_classes], labels [N]) of the N selected positions of `batch`."""
        raise NotImplementedError

    def save_pretrained(self, directory: Path) -> None:
        """Write the encoder checkpoint (the layout the kind's loader reads) into `directory`."""
        raise NotImplementedError

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights an encoder built from the saved checkpoint holds, by the names of its
        backbone (`EsmBackboneEncoder.backbone`, `EnformerEncoder.model`)."""
        raise NotImplementedError


class TokenMlm(MlmObjective):
    """NT-v2 or ESM-2 with its masked-LM head (transformers' `EsmForMaskedLM` layout)."""

    unit = "tokens"

    def __init__(self, kind: str, model: EsmForMaskedLM, tokenizer: NucleotideTokenizer |
                 ProteinTokenizer, special_ids: Sequence[int], random_ids: Sequence[int],
                 max_length: int, description: str):
        super().__init__()
        self.kind, self.model, self.tokenizer = kind, model, tokenizer
        self.description = description
        self.max_length = max_length
        self.unit = "bases" if kind == "nucleotide_transformer" else "residues"
        vocab = model.config.vocab_size
        if vocab != tokenizer.vocab_size:
            raise IsoformerError(
                f"{kind}: the model's vocabulary has {vocab} tokens, the tokenizer's "
                f"{tokenizer.vocab_size}"
            )
        self.n_classes = vocab
        self.register_buffer("special_ids", torch.tensor(sorted(special_ids)), persistent=False)
        self.register_buffer("random_ids", torch.tensor(list(random_ids)), persistent=False)
        model.set_attn_implementation("sdpa")

    def masked_batch(self, sequences: Sequence[str], masking: Masking,
                     generator: torch.Generator) -> MaskedBatch:
        token_ids = [self.tokenizer.encode(s, record=f"sequence {i}")
                     for i, s in enumerate(sequences)]
        input_ids, attention_mask = pad_token_ids(token_ids, self.tokenizer.pad_token_id)
        maskable = attention_mask & ~torch.isin(input_ids, self.special_ids.cpu())
        masked, labels = mask_tokens(input_ids, maskable, self.tokenizer.mask_token_id,
                                     self.random_ids.cpu(), masking, generator)
        return MaskedBatch({"input_ids": masked, "attention_mask": attention_mask}, labels)

    def predict(self, batch: MaskedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.model.esm(input_ids=batch.inputs["input_ids"],
                                attention_mask=batch.inputs["attention_mask"]).last_hidden_state
        selected = batch.labels != IGNORE_INDEX
        # The LM head on the selected positions only: NT-v2's 4,107-way head over every token
        # would cost more than the tiny backbone itself.
        return self.model.lm_head(hidden[selected]), batch.labels[selected]

    def save_pretrained(self, directory: Path) -> None:
        self.model.save_pretrained(directory)

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        prefix = "esm."
        return {k[len(prefix):]: v for k, v in self.model.state_dict().items()
                if k.startswith(prefix) and not k.startswith("esm.contact_head")}


class EnformerBaseHead(nn.Module):
    """Each trunk bin [2 x dim] -> logits of the 4 bases at each of its `bin_size` positions."""

    def __init__(self, width: int, bin_size: int):
        super().__init__()
        self.bin_size = bin_size
        self.linear = nn.Linear(width, bin_size * 4)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # [B, bins, D] -> [B, bins x bin, 4]
        batch, bins, _ = hidden.shape
        return self.linear(hidden).view(batch, bins * self.bin_size, 4)


class EnformerMaskedBases(MlmObjective):
    """Enformer's trunk + `EnformerBaseHead`: masked bases of a one-hot window, predicted at base
    resolution from the bins the trunk returns (the central `target_length` bins; bases outside
    them are never selected)."""

    unit = "bases"
    n_classes = 4

    def __init__(self, config: EncoderConfig):
        super().__init__()
        from isoformer.encoders.enformer import EnformerEncoder

        # Every weight trains, and the trunk output is what the head reads.
        self.encoder = EnformerEncoder(replace(
            config, train_mode="full", hidden_layer=-1, lora_target_modules=None,
            freeze_batchnorm=False,
        ))
        self.kind = "enformer"
        self.max_length = self.encoder.max_length
        self.bin_size = self.encoder.bin_size
        input_bins = self.max_length // self.bin_size
        self.scored = slice((input_bins - self.encoder.output_bins) // 2 * self.bin_size,
                            (input_bins + self.encoder.output_bins) // 2 * self.bin_size)
        self.head = EnformerBaseHead(self.encoder.output_dim, self.bin_size)
        self.description = (
            f"masked bases of {self.max_length}-bp one-hot windows (Enformer trunk + a linear "
            f"head predicting the {self.bin_size} bases of each bin)"
        )

    def masked_batch(self, sequences: Sequence[str], masking: Masking,
                     generator: torch.Generator) -> MaskedBatch:
        for index, sequence in enumerate(sequences):
            if len(sequence) != self.max_length:
                raise IsoformerError(
                    f"enformer: window {index} has {len(sequence)} bp, not {self.max_length}"
                )
        one_hot, valid = one_hot_encode(sequences, unknown="n")
        scored = torch.zeros_like(valid)
        scored[:, self.scored] = True
        masked, labels = mask_bases(one_hot, valid & scored, masking, generator)
        return MaskedBatch({"one_hot": masked}, labels[:, self.scored])

    def predict(self, batch: MaskedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.head(self.encoder(batch.inputs).hidden)  # [B, scored bases, 4]
        selected = batch.labels != IGNORE_INDEX
        return logits[selected], batch.labels[selected]

    def save_pretrained(self, directory: Path) -> None:
        # safetensors refuses the trunk's twice-registered parameters; the official Enformer
        # checkpoint is a pytorch_model.bin as well.
        self.encoder.model.save_pretrained(directory, safe_serialization=False)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()},
                  str(directory / HEAD_FILE), metadata={"format": "pt"})

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.encoder.model.state_dict())


def _load_esm2_for_masked_lm(checkpoint: str) -> EsmForMaskedLM:
    model, info = EsmForMaskedLM.from_pretrained(checkpoint, output_loading_info=True)
    require_every_weight(
        "esm2", checkpoint, info, "an ESM-2",
        optional=lambda key: key.startswith(("esm.contact_head", "lm_head")),
    )
    if any(key.startswith("lm_head") for key in info["missing_keys"]):
        logger.warning("esm2: %s has no LM head; pretraining starts a new one", checkpoint)
    return model


def build_objective(config: EncoderConfig) -> MlmObjective:
    """The masked objective of the encoder `config` describes (random or pretrained weights:
    pretraining a pretrained encoder continues its pretraining)."""
    if config.kind == "nucleotide_transformer":
        from isoformer.encoders.nucleotide_transformer import build_nucleotide_transformer

        model = build_nucleotide_transformer(config)
        tokenizer = NucleotideTokenizer(unknown="n")
        limit = (min(NT_MAX_TOKENS, model.config.max_position_embeddings - 2) - 1) * NT_KMER
        special = [tokenizer.token_to_id[t] for t in
                   ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", "N")]
        first, last = (tokenizer.token_to_id[base * NT_KMER] for base in "AG")
        kmers = range(first, last + 1)
        return TokenMlm(config.kind, model, tokenizer, special, kmers, limit,
                        "masked 6-mer tokens (NT-v2 with its LM head, lm_head.*)")
    if config.kind == "esm2":
        from isoformer.encoders.esm import ESM2_CHECKPOINT, esm2_config

        if config.init == "pretrained":
            model = load_checkpoint("esm2", config.checkpoint or ESM2_CHECKPOINT,
                                    _load_esm2_for_masked_lm)
        else:
            try:
                model = EsmForMaskedLM(esm2_config(config.architecture))
            except TypeError as error:
                raise IsoformerError(f"esm2 architecture: {error}") from error
        tokenizer = ProteinTokenizer(unknown="unk")
        special = [tokenizer.token_to_id[t] for t in tokenizer.tokens if len(t) > 1]
        limit = min(ESM2_MAX_RESIDUES, model.config.max_position_embeddings - 2)
        return TokenMlm(config.kind, model, tokenizer, special,
                        [tokenizer.token_to_id[r] for r in STANDARD_RESIDUES], limit,
                        "masked residues (ESM-2 with its LM head, EsmForMaskedLM)")
    if config.kind == "enformer":
        return EnformerMaskedBases(config)
    raise IsoformerError(
        f"no masked pretraining objective for {config.kind!r} encoders (there is one for "
        f"{', '.join(OBJECTIVE_KINDS)})"
    )
