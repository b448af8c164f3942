"""Loading official checkpoints: one clear error when a Hugging Face id cannot be fetched."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from isoformer.errors import IsoformerError

LoadedT = TypeVar("LoadedT")


def load_checkpoint(kind: str, checkpoint: str | None, load: Callable[[str], LoadedT]) -> LoadedT:
    """`load(checkpoint)`, turning a missing checkpoint or a failed download into IsoformerError.

    The message names the id and says how to point the encoder at a local copy instead.
    """
    if not checkpoint:
        raise IsoformerError(
            f"{kind}: init='pretrained' needs a checkpoint (a Hugging Face id or a local directory)"
        )
    try:
        return load(checkpoint)
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split())  # one line: the CLI prints errors on one line
        raise IsoformerError(
            f"{kind}: cannot load the checkpoint {checkpoint!r} ({reason}). Without internet, "
            f"download it elsewhere (`huggingface-cli download {checkpoint} --local-dir DIR`), "
            "copy DIR here and set the encoder's checkpoint to that local directory"
        ) from error


def require_every_weight(
    kind: str,
    checkpoint: str,
    info: Mapping[str, Any],
    architecture: str,
    optional: Callable[[str], bool] = lambda key: False,
) -> None:
    """Refuse a checkpoint whose loading info (`output_loading_info=True`) shows missing or
    mis-shaped tensors: a weight the checkpoint lacks would stay silently random.

    `optional(key)` names tensors that may be missing (heads off the embedding path, tied weights).
    """
    missing = [key for key in info["missing_keys"] if not optional(key)]
    if missing or info["mismatched_keys"]:
        raise IsoformerError(
            f"{kind}: {checkpoint} is not {architecture} checkpoint (missing tensors: "
            f"{missing[:5]}, wrong shapes: {[key for key, *_ in info['mismatched_keys']][:5]})"
        )
