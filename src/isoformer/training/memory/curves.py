"""Quantities measured at a few short input lengths, fitted with a + b L + c L^2 and evaluated at
the config's length."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from isoformer.training.memory.measure import StepMeasurement


def _fit(lengths: list[int], values: list[float]) -> tuple[np.ndarray, float]:
    """Least-squares a + b x + c x^2, x = L / max(L), through the points: the coefficients and the
    largest residual relative to the largest value."""
    x = np.asarray(lengths, dtype=np.float64) / max(lengths)
    design = np.stack([np.ones_like(x), x, x**2], axis=1)
    y = np.asarray(values, dtype=np.float64)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = np.abs(design @ coefficients - y).max() / max(np.abs(y).max(), 1.0)
    return coefficients, float(residual)


@dataclass
class Curve:
    """Quantities (bytes kept and transient, FLOPs; each per sample and per step) measured at a
    few lengths -> at any length."""

    lengths: list[int] = field(default_factory=list)
    points: dict[str, list[float]] = field(default_factory=dict)

    def add(self, length: int, **values: float) -> None:
        self.lengths.append(length)
        for name, value in values.items():
            self.points.setdefault(name, []).append(value)

    def at(self, length: int) -> tuple[dict[str, float], dict[str, float]]:
        """Each quantity at `length` (never negative), and each one's relative fit residual."""
        if self.lengths == [length]:
            return ({name: values[0] for name, values in self.points.items()},
                    dict.fromkeys(self.points, 0.0))
        result, residuals = {}, {}
        for name, values in self.points.items():
            coefficients, residuals[name] = _fit(self.lengths, values)
            x = length / max(self.lengths)
            result[name] = max(float(coefficients @ np.array([1.0, x, x * x])), 0.0)
        return result, residuals


def add_point(curve: Curve, length: int, run: Callable[[int], StepMeasurement]) -> None:
    """Measure at batch 1 and 2: per-sample = the difference, per-step = the rest (FLOPs: about
    nothing, they grow with the batch)."""
    one, two = run(1), run(2)
    values = {}
    for name in ("kept", "transient", "flops"):
        a, b = float(getattr(one, name)), float(getattr(two, name))
        per_sample = max(b - a, 0.0)
        values[name] = per_sample
        values[f"{name}_fixed"] = max(a - per_sample, 0.0)
    curve.add(length, **values)

