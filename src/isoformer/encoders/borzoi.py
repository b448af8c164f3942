"""Borzoi embeddings behind the `SequenceEncoder` interface, through `borzoi-pytorch`.

Built from `EncoderConfig(kind="borzoi", ...)`:
- `init="random"`: `architecture` holds `Borzoi.from_hparams` keyword arguments (`BorzoiConfig`:
  dim, depth, heads, attn_dim_key, attn_dim_value, dropout rates), optionally `preset` (`tiny`,
  `paper`) with overrides. borzoi-pytorch hard-codes the convolution tower's widths (512 to 1,280
  channels), so `tiny` shrinks only the transformer and the U-Net width and runs on a short window.
- `init="pretrained"`: `checkpoint` is a Hugging Face id (default `johahi/borzoi-replicate-0`) or a
  local directory; the human/mouse track heads are not built.

borzoi-pytorch reads a track table with pandas when imported, so it is imported only when a
Borzoi encoder is built.

Input: one DNA window per transcript, one-hot [B, L, 4]. `max_length` (default 524,288 bp, the
official window) is the window the encoder accepts: longer sequences are cropped around their
centre (the TSS) and counted, shorter ones are an error; it must be a multiple of 128 bp (the
transformer runs on 128-bp bins).

Output: `Borzoi.get_embs_after_crop`, the U-Net output before the final joined convolutions and the
track heads: [B, bins, dim] in 32-bp bins (6,144 x 1,536 at full size, the central bins the
official model predicts), all-True mask. A window with fewer than `bins_to_return` bins keeps all.
Only the last state (`hidden_layer=-1`) is exposed: the transformer layers run on 128-bp bins
before the U-Net restores 32-bp resolution, so their states are not comparable outputs.

The wrapper runs `get_embs_after_crop`'s stages itself so that, with `gradient_checkpointing`,
each one (the first convolution, every block of the convolution tower and of the U-Net, every
transformer layer) is checkpointed.

Short windows: borzoi-pytorch computes an attention layer's relative-position features on its first
call, for that call's length, and keeps them in a plain attribute: a later call of another length
reuses stale distances, and `.to(device)` does not move them. The wrapper computes them once for its
window (distances -(n-1) .. n-1, scaled to the official 4,096-position window, as the library
does) and registers them as a non-persistent buffer, so they follow the module across devices.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from isoformer.encoders.base import CropRule, EncoderConfig, EncoderOutput
from isoformer.encoders.checkpointing import run_stages
from isoformer.encoders.dna_window import DnaWindowEncoder
from isoformer.encoders.loading import load_checkpoint, require_every_weight
from isoformer.encoders.train_modes import any_trainable, apply_train_mode
from isoformer.errors import IsoformerError

if TYPE_CHECKING:
    from borzoi_pytorch import Borzoi

logger = logging.getLogger(__name__)

BORZOI_CHECKPOINT = "johahi/borzoi-replicate-0"
BORZOI_WINDOW = 524_288  # bp
BORZOI_BIN = 32  # bp per output bin
BORZOI_TRANSFORMER_BIN = 128  # bp per transformer position
BORZOI_POSITIONS = 4096  # transformer positions of the full window
# LoRA's default: the attention projections (`to_rel_k`, of the relative positions, stays as is).
BORZOI_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out")

BORZOI_PRESETS: dict[str, dict[str, Any]] = {
    # BorzoiConfig's defaults are the published model.
    "paper": dict(dim=1536, depth=8, heads=8, attn_dim_key=64, attn_dim_value=192,
                  bins_to_return=6144),
    "tiny": dict(dim=32, depth=2, heads=2, attn_dim_key=8, attn_dim_value=16,
                 bins_to_return=32),
}


def borzoi_hparams(architecture: dict[str, Any]) -> dict[str, Any]:
    """`from_hparams` kwargs from an architecture dict: optional `preset` (default `paper`)."""
    fields = dict(architecture)
    preset = fields.pop("preset", "paper")
    if preset not in BORZOI_PRESETS:
        raise IsoformerError(
            f"unknown Borzoi preset {preset!r} (choose from {', '.join(BORZOI_PRESETS)})"
        )
    # The track heads are never used: IsoFormer reads the embeddings before them.
    return {**BORZOI_PRESETS[preset], **fields, "enable_human_head": False,
            "enable_mouse_head": False}


def _load_borzoi(checkpoint_id: str) -> Borzoi:
    from borzoi_pytorch import Borzoi

    model, info = Borzoi.from_pretrained(
        checkpoint_id, enable_human_head=False, enable_mouse_head=False, output_loading_info=True
    )
    require_every_weight("borzoi", checkpoint_id, info, "a Borzoi")
    logger.info("borzoi: loaded %s (depth %d, dim %d)", checkpoint_id, model.config.depth,
                model.config.dim)
    return model


def build_borzoi(config: EncoderConfig) -> Borzoi:
    """The Borzoi model (no track heads) that `config` describes: random or pretrained."""
    if config.init == "pretrained":
        return load_checkpoint("borzoi", config.checkpoint or BORZOI_CHECKPOINT, _load_borzoi)
    from borzoi_pytorch import Borzoi

    try:
        return Borzoi.from_hparams(**borzoi_hparams(config.architecture))
    except TypeError as error:
        raise IsoformerError(f"borzoi architecture: {error}") from error


def fit_relative_positions(model: torch.nn.Module, positions: int) -> None:
    """Give each attention layer the features of distances -(n-1) .. n-1 for n = `positions`."""
    from borzoi_pytorch.pytorch_borzoi_transformer import Attention, get_positional_embed

    if not 0 < positions <= BORZOI_POSITIONS:
        raise IsoformerError(
            f"borzoi: {positions} transformer positions, at most {BORZOI_POSITIONS}"
        )
    for module in model.modules():
        if isinstance(module, Attention):
            device = module.to_rel_k.weight.device
            table = get_positional_embed(
                positions, BORZOI_POSITIONS, module.num_rel_pos_features, device
            )  # [2n - 1, features]
            if "positions" not in module._buffers:
                del module.positions  # the library's lazily filled plain attribute
            module.register_buffer("positions", table, persistent=False)


class BorzoiEncoder(DnaWindowEncoder):
    """Borzoi embeddings of DNA windows: hidden [B, bins, dim] in 32-bp bins, all-True mask."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.kind != "borzoi":
            raise IsoformerError(f"BorzoiEncoder cannot build kind {config.kind!r}")
        if config.hidden_layer != -1:
            raise IsoformerError(
                "borzoi: only hidden_layer=-1 (the embeddings before the heads) is supported; "
                "its transformer layers run at 128-bp resolution inside the U-Net"
            )
        self.config = config
        self.kind = "borzoi"
        self.model = build_borzoi(config)
        self.max_length = config.max_length or BORZOI_WINDOW
        if self.max_length % BORZOI_TRANSFORMER_BIN:
            raise IsoformerError(
                f"borzoi: max_length {self.max_length} is not a multiple of "
                f"{BORZOI_TRANSFORMER_BIN} bp"
            )
        fit_relative_positions(self.model, self.max_length // BORZOI_TRANSFORMER_BIN)
        input_bins = self.max_length // BORZOI_BIN
        self.output_bins = min(self.model.crop.target_length, input_bins)
        # -1 makes borzoi-pytorch's crop a no-op: a short window keeps all its bins.
        self.model.crop.target_length = self.output_bins if self.output_bins < input_bins else -1
        self.output_dim = self.model.config.dim
        self.crop_rule: CropRule = config.crop or "center"
        model = self.model
        apply_train_mode(
            "borzoi", config, model, stem=[model.conv_dna, model.res_tower, model.unet1],
            layers=list(model.transformer),
            tail=[model.horizontal_conv0, model.horizontal_conv1, model.upsampling_unet1,
                  model.separable1, model.upsampling_unet0, model.separable0],
            lora_targets=BORZOI_LORA_TARGETS,
        )
        self.train()

    def forward(self, inputs: dict[str, torch.Tensor]) -> EncoderOutput:
        one_hot = self.channels_first(inputs)  # [B, 4, L]
        with torch.set_grad_enabled(self.records_graph(any_trainable(self.model))):
            hidden = self._embeddings(one_hot, self.checkpointing)  # [B, dim, bins]
        hidden = hidden.transpose(1, 2)  # [B, bins, dim]
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        return EncoderOutput(hidden=hidden, mask=mask)

    def _embeddings(self, one_hot: torch.Tensor, checkpointed: bool) -> torch.Tensor:
        """`Borzoi.get_embs_after_crop` stage by stage, each stage checkpointed if asked:
        one-hot [B, 4, L] -> [B, dim, output_bins]."""
        model = self.model

        def run(*stages: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
            return run_stages(stages, x, checkpointed)

        unet0 = run(model.conv_dna, *model.res_tower, x=one_hot)  # [B, 1280, L / 32]
        unet1 = run(*model.unet1, x=unet0)  # [B, dim, L / 64]
        x = model._max_pool(unet1)  # [B, dim, L / 128]: the transformer's positions
        x = run(*model.transformer, x=x.transpose(1, 2)).transpose(1, 2)
        x = run(*model.upsampling_unet1, x=x) + run(model.horizontal_conv1, x=unet1)
        x = run(model.separable1, x=x)
        x = run(*model.upsampling_unet0, x=x) + run(model.horizontal_conv0, x=unet0)
        x = run(model.separable0, x=x)
        return model.crop(x.transpose(1, 2)).transpose(1, 2)

    @classmethod
    def from_pretrained(
        cls, checkpoint_id: str = BORZOI_CHECKPOINT, **config_fields: Any
    ) -> BorzoiEncoder:
        """Shortcut: an encoder over official Borzoi weights (a Hugging Face id or a directory)."""
        return cls(EncoderConfig(kind="borzoi", init="pretrained", checkpoint=checkpoint_id,
                                 **config_fields))
