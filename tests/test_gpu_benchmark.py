"""benchmarks/gpu.py's code path on a CPU (the figures themselves need a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))


@pytest.mark.slow
def test_the_gpu_benchmark_runs_on_a_cpu_with_the_tiny_preset(capsys):
    import gpu

    result = gpu.main(["--device", "cpu", "--preset", "tiny", "--quick"])
    # A training step is a forward and a backward: about three forwards of FLOPs.
    ratio = result["train"]["tflops_per_sample"] / result["inference"]["tflops_per_sample"]
    assert 2.0 < ratio < 4.0
    assert result["train"]["samples_per_s"] > 0 and result["inference"]["micro_batch"] >= 1
    assert "train: micro-batch 1" in capsys.readouterr().out
