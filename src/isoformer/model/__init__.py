"""The IsoFormer network: configs and presets, aggregation, head, and the full model."""

from isoformer.model.config import (
    AggregationConfig,
    HeadConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    load_preset,
    save_config,
)
from isoformer.model.isoformer import IsoFormer, IsoFormerOutput

__all__ = [
    "AggregationConfig",
    "HeadConfig",
    "IsoFormer",
    "IsoFormerOutput",
    "ModelConfig",
    "RunConfig",
    "TrainingConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "load_preset",
    "save_config",
]
