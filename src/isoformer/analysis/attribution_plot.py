"""The figure of one record's attribution: a score track along its sequence.

One bar per position of the span (red: the reference letter raises the target, blue: it lowers
it); for RNA the 5'UTR, CDS and 3'UTR shaded when the record gives their lengths, for DNA the TSS
(index len // 2 of a TSS-centred window, `Genome.window`) a dashed line; known elements (e.g. a
simulation's motifs), when given, a black bar under the track. Built on
`matplotlib.figure.Figure` (no pyplot, no backend switched) and written atomically, like the
other figures (`isoformer.analysis.plots`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from isoformer.files import atomic_output

RAISES, LOWERS = "#C44E52", "#4C72B0"
REGION_COLOURS = {"5'UTR": "#8172B2", "CDS": "#55A868", "3'UTR": "#CCB974"}


@dataclass(frozen=True)
class RnaRegions:
    """Lengths of a transcript's 5'UTR, CDS (stop codon included) and 3'UTR in its RNA."""

    utr5: int
    cds: int
    utr3: int

    @classmethod
    def from_record(cls, record: Mapping[str, Any], length: int) -> RnaRegions | None:
        """From the record's `utr5_length` and `cds_length` (and `utr3_length`, else the rest
        of the RNA); None when it gives neither or `cds_length` is 0 (a non-coding transcript,
        which the dataset stores as 0, 0, 0). Lengths that are not non-negative integers making
        up the RNA's `length` raise ValueError saying so."""
        utr5, cds = record.get("utr5_length"), record.get("cds_length")
        if (utr5 is None and cds is None) or cds == 0:
            return None
        if not (isinstance(utr5, int) and isinstance(cds, int)):
            raise ValueError(f"utr5_length {utr5!r} and cds_length {cds!r} must be integers")
        utr3 = record.get("utr3_length", length - utr5 - cds)
        if not isinstance(utr3, int) or min(utr5, cds, utr3) < 0 or utr5 + cds + utr3 != length:
            raise ValueError(f"region lengths {utr5} + {cds} + {utr3} do not make up the RNA's "
                             f"{length} bases")
        return cls(utr5, cds, utr3)

    def bounds(self) -> Iterator[tuple[str, int, int]]:
        """(name, start, end) of each non-empty region, 0-based half-open."""
        start = 0
        for name, length in zip(REGION_COLOURS, (self.utr5, self.cds, self.utr3)):
            if length:
                yield name, start, start + length
            start += length


def plot_attribution(scores: np.ndarray, path: str | Path, title: str, span: tuple[int, int],
                     ylabel: str, regions: RnaRegions | None = None, tss: int | None = None,
                     elements: Sequence[tuple[int, int]] = ()) -> Path:
    """The track of `scores` [L] over `span` (positions 0-based), shaded and marked as the module
    says; NaN (outside the span) is drawn as nothing. `elements`: (start, end) intervals."""
    path = Path(path)
    start, end = span
    positions = np.arange(start, end)
    values = np.nan_to_num(np.asarray(scores, dtype=np.float64)[start:end])
    fig = Figure(figsize=(float(np.clip((end - start) / 60, 6.0, 16.0)), 3.2))
    ax = fig.subplots()
    for name, region_start, region_end in (regions.bounds() if regions else ()):
        if region_start < end and region_end > start:
            ax.axvspan(region_start - 0.5, region_end - 0.5, color=REGION_COLOURS[name],
                       alpha=0.2, linewidth=0, label=name)
    ax.bar(positions, values, width=1.0, linewidth=0,
           color=np.where(values >= 0, RAISES, LOWERS))
    if tss is not None and start <= tss < end:
        ax.axvline(tss, color="black", linestyle="--", linewidth=1, label="TSS")
    ax.axhline(0.0, color="grey", linewidth=0.5)
    if elements:
        low = min(0.0, float(values.min())) - 0.05 * max(float(np.ptp(values)), 1e-12)
        for number, (element_start, element_end) in enumerate(elements):
            ax.hlines(low, element_start - 0.5, element_end - 0.5, color="black", linewidth=3,
                      label="known element" if number == 0 else None)
    ax.set_xlim(start - 0.5, end - 0.5)
    ax.set_xlabel("position (0-based)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", frameon=False, fontsize=8, ncol=4)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path
