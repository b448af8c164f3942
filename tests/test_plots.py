"""Figures: PNG files written atomically, and no change to the user's matplotlib backend."""

from __future__ import annotations

import subprocess
import sys

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_importing_the_library_keeps_the_users_backend_and_still_writes_png(tmp_path):
    """A notebook's backend survives `import isoformer...`; figures are PNG files regardless."""
    script = f"""
import matplotlib
matplotlib.use("svg")
import isoformer.analysis.demo, isoformer.analysis.oracle, isoformer.training.evaluate
from isoformer.analysis.plots import plot_r2_per_tissue, plot_predicted_vs_observed
import numpy as np
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
plot_r2_per_tissue({{"Liver": 0.5, "Brain": None}}, r"{tmp_path / 'r2.png'}")
plot_predicted_vs_observed(np.eye(3), np.eye(3), r"{tmp_path / 'scatter.png'}")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in ("r2.png", "scatter.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r2.png", "scatter.png"]  # no temporaries
