"""Training and using runs: the `Run` directory, Lightning module and data, fit, evaluate."""

from isoformer.training.run import Run, TargetStatistics

__all__ = ["Run", "TargetStatistics"]
