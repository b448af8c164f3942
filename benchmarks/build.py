"""Expression step of `isoformer build`: streamed GCT reader vs a naive whole-file pandas read.

Generates a gzipped GCT of --transcripts x --samples (default 20,000 x 2,000) with GTEx-like TPM
text (a quarter zeros, the rest log-normal with 4 significant digits) and a sample attributes
file over the 30 tissues plus one outside them. Each method runs in its own subprocess, so its
peak RSS (getrusage of that process, imports included) is its own. Both results are compared.
Usage:
    python benchmarks/build.py [--transcripts 20000] [--samples 2000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from isoformer.constants import TISSUES

OTHER_TISSUE = "Bone Marrow"
REAL_ROWS, REAL_SAMPLES = 199_324, 17_382  # GTEx v8 transcript TPM GCT


def write_inputs(folder: Path, n_rows: int, n_samples: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    samples = [f"GTEX-{i:05d}-SM-{i:04X}" for i in range(n_samples)]
    tissues = [*TISSUES, OTHER_TISSUE]
    attributes = folder / "sample_attributes.txt"
    attributes.write_text("SAMPID\tSMTS\n" + "".join(
        f"{sample}\t{tissues[i % len(tissues)]}\n" for i, sample in enumerate(samples)))
    pool = np.array(["0"] * 500 + [f"{x:.4g}" for x in rng.lognormal(0.0, 2.0, 1500)])
    gct = folder / "transcript_tpm.gct.gz"
    with gzip.open(gct, "wt", compresslevel=6) as out:
        header = "\t".join(["transcript_id", "gene_id", *samples])
        out.write(f"#1.2\n{n_rows}\t{n_samples}\n{header}\n")
        for row in range(n_rows):
            values = "\t".join(pool[rng.integers(0, len(pool), n_samples)])
            out.write(f"ENST{row:011d}.1\tENSG{row // 3:011d}.1\t{values}\n")
    return gct, attributes


def run_streamed(gct: str, attributes: str) -> np.ndarray:
    from isoformer.data.gtex import read_sample_tissues, read_tissue_expression

    return read_tissue_expression(
        gct, read_sample_tissues(attributes), TISSUES, progress=False
    ).values


def run_naive(gct: str, attributes: str) -> np.ndarray:
    import pandas as pd

    tissue_of = pd.read_csv(attributes, sep="\t", index_col="SAMPID")["SMTS"]
    tpm = pd.read_csv(gct, sep="\t", skiprows=2, index_col=0).drop(columns="gene_id")
    means = tpm.T.groupby(tissue_of.reindex(tpm.columns).to_numpy()).mean().T
    return np.log1p(means[list(TISSUES)].to_numpy()).astype(np.float32)


def child(method: str, gct: str, attributes: str, result: str) -> None:
    start = time.perf_counter()
    values = {"streamed": run_streamed, "naive": run_naive}[method](gct, attributes)
    seconds = time.perf_counter() - start
    np.save(result, values)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": seconds, "rows": len(values), "peak_mib": peak_kib / 1024}))


def measure(method: str, gct: Path, attributes: Path, folder: Path) -> tuple[dict, np.ndarray]:
    result = folder / f"{method}.npy"
    done = subprocess.run(
        [sys.executable, __file__, "--child", method, str(gct), str(attributes), str(result)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), np.load(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcripts", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "GCT", "SAMPLES", "RESULT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        gct, attributes = write_inputs(folder, args.transcripts, args.samples)
        print(f"generated {args.transcripts:,} x {args.samples:,} GCT "
              f"({gct.stat().st_size / 2**20:.0f} MiB gzipped) in "
              f"{time.perf_counter() - start:.0f} s")
        streamed, ours = measure("streamed", gct, attributes, folder)
        naive, theirs = measure("naive", gct, attributes, folder)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)  # same targets either way
    for name, m in (("streamed", streamed), ("naive pandas", naive)):
        print(f"{name:>13}: {m['seconds']:.2f} s, {m['rows'] / m['seconds']:,.0f} rows/s, "
              f"peak RSS {m['peak_mib']:.0f} MiB")
    rate = streamed["rows"] / streamed["seconds"]
    cells_per_s = rate * args.samples
    print(f"extrapolated to GTEx v8 ({REAL_ROWS:,} x {REAL_SAMPLES:,}): "
          f"~{REAL_ROWS * REAL_SAMPLES / cells_per_s / 60:.0f} min at the same values/s")
    print(f"build: {rate:,.0f} rows/s ({naive['seconds'] / streamed['seconds']:.1f}x faster, "
          f"{naive['peak_mib'] / streamed['peak_mib']:.1f}x less memory vs naive pandas)")


if __name__ == "__main__":
    main()
