"""The output of `isoformer variant-effect` (`isoformer.analysis.variant_effect`): the table's
columns, its format (TSV or Parquet by the extension), its writer and the summary's path.

One row per (allele, transcript): variant_id (chrom:pos:ref:alt, 1-based POS), transcript_id,
gene_id, consequence, protein_change, modalities_changed (comma-joined), delta_mean (mean over
tissues), then one column per run tissue: predicted alt minus ref in log(1 + TPM).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from isoformer.errors import IsoformerError

if TYPE_CHECKING:
    from isoformer.analysis.variant_effect import VariantEffect

OUTPUT_FORMATS = {".tsv": "tsv", ".parquet": "parquet"}
ID_COLUMNS = ("variant_id", "transcript_id", "gene_id", "consequence", "protein_change",
              "modalities_changed")
DELTA_MEAN = "delta_mean"


def summary_path(out: str | Path) -> Path:
    """Where the summary of the output `out` is written: `<out>.summary.json` beside it."""
    out = Path(out)
    return out.with_name(f"{out.name}.summary.json")


def output_format(out: str | Path) -> str:
    """"tsv" or "parquet", from the extension of `out`."""
    kind = OUTPUT_FORMATS.get(Path(out).suffix.lower())
    if kind is None:
        raise IsoformerError(
            f"{out}: the output must end in {' or '.join(OUTPUT_FORMATS)} (the format follows "
            "the extension)"
        )
    return kind


def output_schema(tissues: Sequence[str]) -> dict[str, Any]:
    return {**{c: pl.String for c in ID_COLUMNS}, DELTA_MEAN: pl.Float64,
            **{t: pl.Float64 for t in tissues}}


def effects_frame(effects: Sequence[VariantEffect], deltas: np.ndarray,
                  tissues: Sequence[str]) -> pl.DataFrame:
    """The output rows of `effects`, deltas [E, T] in `tissues` order."""
    columns = {
        "variant_id": [e.variant.variant_id for e in effects],
        "transcript_id": [e.transcript.transcript_id for e in effects],
        "gene_id": [e.transcript.gene_id for e in effects],
        "consequence": [e.inputs.consequence for e in effects],
        "protein_change": [e.inputs.protein_change for e in effects],
        "modalities_changed": [",".join(e.inputs.modalities_changed) for e in effects],
        DELTA_MEAN: deltas.mean(axis=1),
        **{tissue: deltas[:, t] for t, tissue in enumerate(tissues)},
    }
    return pl.DataFrame(columns, schema=output_schema(tissues))


@contextmanager
def table_writer(path: Path, kind: str,
                 schema: dict[str, Any]) -> Iterator[Callable[[pl.DataFrame], None]]:
    """`write(frame)` appending to a TSV file (header first) or a Parquet file (a row group per
    frame); the file is complete when the block ends."""
    empty = pl.DataFrame(schema=schema)
    if kind == "parquet":
        parquet = pq.ParquetWriter(str(path), empty.to_arrow().schema)
        try:
            yield lambda frame: parquet.write_table(frame.to_arrow())
        finally:
            parquet.close()
    else:
        # Unquoted: no field holds a tab or newline, and "" stays an empty field.
        options = {"separator": "\t", "quote_style": "never"}
        with path.open("wb") as handle:
            empty.write_csv(handle, **options)
            yield lambda frame: frame.write_csv(handle, include_header=False, **options)
