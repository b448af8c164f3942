"""Loading official checkpoints: one clear error when a Hugging Face id cannot be fetched."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

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
