"""Enformer trunk embeddings behind the `SequenceEncoder` interface, through `enformer-pytorch`.

Built from `EncoderConfig(kind="enformer", ...)`:
- `init="random"`: `architecture` holds `Enformer.from_hparams` keyword arguments, optionally
  `preset` (`tiny`, `paper`) with overrides. Without a preset they override the paper's model.
- `init="pretrained"`: `checkpoint` is a Hugging Face id (default
  `EleutherAI/enformer-official-rough`) or a local directory, loaded with `output_heads={}`:
  IsoFormer uses the trunk, so the 5,313 + 1,643 track heads are not built.

Input: one DNA window per transcript, one-hot [B, L, 4] (A, C, G, T; N all zeros). Every window of
a batch has the same length; `max_length` (default 196,608 bp, the official window) is the window
the encoder accepts: longer sequences are cropped around their centre (the TSS) and counted,
shorter ones are an error. The window must be a multiple of the bin size (2^num_downsamples bp).

Output: trunk embeddings [B, bins, 2 x dim] (896 x 3,072 at full size) and an all-True mask (bins
never hold padding). The trunk crops the centre `target_length` bins (896 of 1,536 at full size,
because edge bins lack context); a window with fewer bins keeps all of them.

Hidden states: `hidden_layer` indexes [conv tower output, transformer layer 1, ..., layer N,
trunk output]; -1 (default) is the trunk output of width 2 x dim, the others have width dim and
are cropped to the same bins. Parts after the selected state are never run.

Positions: the official weights were trained with TensorFlow's gamma positional features, which
enformer-pytorch ships only for the full 1,536-bin transformer input; pretrained models use them
at that length and enformer-pytorch's own computation at any other length (random models use
`architecture["use_tf_gamma"]`, default False). The choice is written into the model's config as
well as its attention layers, so the architecture saved with a run rebuilds the same positions.

The wrapper runs the trunk's stages itself instead of `Enformer.forward`, which selects heads and
moves inputs with a discarded `x.to(self.device)`, and checkpoints each stage (the stem, every
convolution block, every transformer layer, the pointwise block) when `gradient_checkpointing` is
set; enformer-pytorch's own `use_checkpointing` (transformer layers only) is refused.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from isoformer.encoders.base import CropRule, EncoderConfig, EncoderOutput
from isoformer.encoders.checkpointing import run_stages
from isoformer.encoders.dna_window import DnaWindowEncoder
from isoformer.encoders.loading import load_checkpoint, require_every_weight
from isoformer.encoders.train_modes import (
    any_trainable,
    apply_train_mode,
    resolve_hidden_layer,
)
from isoformer.errors import IsoformerError

if TYPE_CHECKING:
    from enformer_pytorch import Enformer

logger = logging.getLogger(__name__)

ENFORMER_CHECKPOINT = "EleutherAI/enformer-official-rough"
ENFORMER_WINDOW = 196_608  # bp: 1,536 bins of 128 bp
TF_GAMMA_BINS = 1536  # the only transformer length enformer-pytorch has TF gammas for
# LoRA's default: the attention projections (`to_rel_k`, of the relative positions, stays as is).
ENFORMER_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out")

ENFORMER_PRESETS: dict[str, dict[str, Any]] = {
    # enformer-pytorch's defaults are the published model.
    "paper": dict(dim=1536, depth=11, heads=8, attn_dim_key=64, num_downsamples=7,
                  dim_divisible_by=128, target_length=896, output_heads={}),
    # 16-bp bins; a 2,048-bp window gives 128 bins, cropped to the central 64. dim / heads must
    # be a multiple of 6 (enformer-pytorch splits relative-position features into 6 groups).
    "tiny": dict(dim=48, depth=2, heads=4, attn_dim_key=8, num_downsamples=4,
                 dim_divisible_by=4, target_length=64, output_heads={}),
}


def enformer_hparams(architecture: dict[str, Any]) -> dict[str, Any]:
    """`from_hparams` kwargs from an architecture dict: optional `preset` (default `paper`)."""
    fields = dict(architecture)
    preset = fields.pop("preset", "paper")
    if fields.get("use_checkpointing"):
        raise IsoformerError(
            "enformer architecture: use_checkpointing is not read here; set the encoder's "
            "gradient_checkpointing: true instead (it also covers the stem and convolution tower)"
        )
    if preset not in ENFORMER_PRESETS:
        raise IsoformerError(
            f"unknown Enformer preset {preset!r} (choose from {', '.join(ENFORMER_PRESETS)})"
        )
    hparams = {**ENFORMER_PRESETS[preset], **fields}
    if hparams["num_downsamples"] < 3:
        # enformer-pytorch spaces the tower's widths from dim / 2 to dim over num_downsamples - 1
        # points: with 2 it divides by zero, with 1 the empty tower keeps dim / 2 channels.
        raise IsoformerError(
            f"enformer architecture: num_downsamples {hparams['num_downsamples']} is below 3, "
            "the fewest enformer-pytorch builds (8-bp bins)"
        )
    return hparams


def _load_enformer(checkpoint_id: str) -> Enformer:
    from enformer_pytorch import Enformer

    model, info = Enformer.from_pretrained(
        checkpoint_id, output_heads={}, output_loading_info=True
    )
    require_every_weight("enformer", checkpoint_id, info, "an Enformer")
    logger.info("enformer: loaded %s (depth %d, dim %d)", checkpoint_id, model.config.depth,
                model.config.dim)
    return model


def build_enformer(config: EncoderConfig) -> Enformer:
    """The Enformer model (trunk, no heads) that `config` describes: random or pretrained."""
    if config.init == "pretrained":
        return load_checkpoint("enformer", config.checkpoint or ENFORMER_CHECKPOINT, _load_enformer)
    from enformer_pytorch import Enformer

    try:
        return Enformer.from_hparams(**enformer_hparams(config.architecture))
    except TypeError as error:
        raise IsoformerError(f"enformer architecture: {error}") from error


class EnformerEncoder(DnaWindowEncoder):
    """Enformer embeddings of DNA windows: hidden [B, bins, D], all-True mask [B, bins]."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.kind != "enformer":
            raise IsoformerError(f"EnformerEncoder cannot build kind {config.kind!r}")
        self.config = config
        self.kind = "enformer"
        self.model = build_enformer(config)
        self.model.config.output_heads = {}
        self.model.add_heads()  # no heads: IsoFormer reads the trunk
        model_config = self.model.config
        self.bin_size = 2**model_config.num_downsamples
        self.max_length = config.max_length or ENFORMER_WINDOW
        if self.max_length % self.bin_size:
            raise IsoformerError(
                f"enformer: max_length {self.max_length} is not a multiple of the "
                f"{self.bin_size}-bp bin"
            )
        input_bins = self.max_length // self.bin_size
        self.output_bins = min(model_config.target_length, input_bins)
        # -1 makes enformer-pytorch's crop a no-op: a short window keeps all its bins.
        self.model.set_target_length(self.output_bins if self.output_bins < input_bins else -1)
        if config.init == "pretrained":
            use_tf_gamma = input_bins == TF_GAMMA_BINS
        else:
            use_tf_gamma = model_config.use_tf_gamma
        model_config.use_tf_gamma = self.model.use_tf_gamma = use_tf_gamma
        for module in self.model.transformer.modules():
            if hasattr(module, "use_tf_gamma"):
                module.use_tf_gamma = use_tf_gamma
        self.crop_rule: CropRule = config.crop or "center"
        self.num_layers = model_config.depth
        self.output_layer = resolve_hidden_layer(
            "enformer", config.hidden_layer, self.num_layers + 2,
            f"0 = conv tower, 1..{self.num_layers} = transformer layers, "
            f"{self.num_layers + 1} = trunk output",
        )
        self.returns_trunk = self.output_layer == self.num_layers + 1
        self.output_dim = 2 * model_config.dim if self.returns_trunk else model_config.dim
        apply_train_mode(
            "enformer", config, self.model, stem=[self.model.stem, self.model.conv_tower],
            layers=list(self.model.transformer[: self.output_layer]),
            tail=[self.model.final_pointwise] if self.returns_trunk else [],
            lora_targets=ENFORMER_LORA_TARGETS,
        )
        self.train()

    def forward(self, inputs: dict[str, torch.Tensor]) -> EncoderOutput:
        one_hot = self.channels_first(inputs)  # [B, 4, L]
        model = self.model
        with torch.set_grad_enabled(self.records_graph(any_trainable(model))):
            checkpointed = self.checkpointing
            # The stem and the tower run at 1- to 64-bp resolution: most of the memory is there.
            x = run_stages([model.stem, *model.conv_tower], one_hot, checkpointed)  # [B, dim, bins]
            x = x.transpose(1, 2)  # [B, bins, dim]
            layers = model.transformer[: min(self.output_layer, self.num_layers)]
            x = run_stages(layers, x, checkpointed)
            x = model.crop_final(x)  # [B, output_bins, dim]
            if self.returns_trunk:
                x = run_stages([model.final_pointwise], x, checkpointed)  # [B, output_bins, 2 dim]
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return EncoderOutput(hidden=x, mask=mask)

    @classmethod
    def from_pretrained(
        cls, checkpoint_id: str = ENFORMER_CHECKPOINT, **config_fields: Any
    ) -> EnformerEncoder:
        """Shortcut: an encoder over official Enformer weights (Hugging Face id or directory)."""
        return cls(EncoderConfig(kind="enformer", init="pretrained", checkpoint=checkpoint_id,
                                 **config_fields))
