"""`isoformer predict` at scale: records/s against a naive loop, peak memory against input size.

Writes the tiny preset with random weights as a run in a temporary directory, and synthetic
records as JSON lines: random DNA windows at the run's 1,024 bp, RNA and, for two records in
three, a protein; transcript-length records (RNA 200-2,000 bases, proteins of 50-400 residues)
and short ones (RNA 50-150, proteins of 20-60). Measured in this one run, on both kinds:
- speed: `predict_file` (buffered, length-sorted batches of 16, inference mode) against a naive
  loop over the first records (all read first, one forward per record, autograd on), both after
  the same warm-up and without the model's loading; their predictions are compared. The last
  line is that of transcript-length records.
- memory: peak RSS (VmHWM of a subprocess of its own: imports and model included) of
  `predict_file` on N and on 10 N short records (1,000 records repeated, each line with its own
  id), beside that of reading every record of the same file into a list first, alone, as
  `predict` did before it streamed.
Torch runs on one thread by default: on 2 cores shared with other work, tiny matrices run several
times faster on one thread than on two (short records: 13-17 against 237-261 records/s, load 3-4.5).
Usage:
    python benchmarks/predict.py [--quick] [--records 600] [--naive-records 150]
                                 [--memory-records 10000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from isoformer.constants import DNA_SEQUENCE, PROTEIN_SEQUENCE, RNA_SEQUENCE
from isoformer.model.config import load_preset
from isoformer.model.isoformer import IsoFormer
from isoformer.training.predict import predict_file
from isoformer.training.run import Run, TargetStatistics

BATCH_SIZE = 16
BASES, RESIDUES = np.frombuffer(b"ACGT", np.uint8), np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", np.uint8)


def make_run(directory: Path) -> Run:
    """The tiny preset with random weights (seed 0), as `isoformer train` would write a run."""
    config = load_preset("tiny")
    torch.manual_seed(0)
    model = IsoFormer.from_config(config.model)
    n_tissues = len(config.model.tissues)
    statistics = TargetStatistics(mean=np.zeros(n_tissues, np.float32),
                                  std=np.ones(n_tissues, np.float32))
    model.set_target_statistics(statistics.mean, statistics.std)
    run = Run.create(directory, config, statistics, {"path": "synthetic (benchmarks/predict.py)"})
    run.write_model(model.save_pretrained)
    return run


def synthetic_records(count: int, dna_length: int, rna: tuple[int, int], protein: tuple[int, int],
                      seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)

    def letters(alphabet: np.ndarray, length: int) -> str:
        return alphabet[rng.integers(0, len(alphabet), length)].tobytes().decode()

    return [{
        "id": f"t{index}",
        DNA_SEQUENCE: letters(BASES, dna_length),
        RNA_SEQUENCE: letters(BASES, int(rng.integers(rna[0], rna[1] + 1))),
        PROTEIN_SEQUENCE: letters(RESIDUES, int(rng.integers(protein[0], protein[1] + 1)))
        if index % 3 else "",  # every third is non-coding
    } for index in range(count)]


def write_repeated(records: list[dict], count: int, path: Path) -> Path:
    """`count` lines cycling through `records`, each with its own id."""
    bodies = [json.dumps({k: v for k, v in r.items() if k != "id"})[1:] for r in records]
    with path.open("w", encoding="utf-8") as out:
        for index in range(count):
            out.write(f'{{"id": "r{index}", {bodies[index % len(bodies)]}\n')
    return path


def naive_loop(run: Run, records: list[dict]) -> tuple[float, np.ndarray]:
    """One record per forward, autograd on, no batching or length sorting: (seconds, [N, T])."""
    model = run.load_model("cpu").eval()
    start = time.perf_counter()
    rows = [model.to_log1p(model(model.tokenize([record])).predictions).detach().numpy()[0]
            for record in records]
    return time.perf_counter() - start, np.array(rows)


def speed(run: Run, records: list[dict], n_naive: int, buffer: int | None, folder: Path
          ) -> tuple[float, float, float]:
    """records/s of `predict_file` and of the naive loop, and their largest difference."""
    source, output = folder / "speed.jsonl", folder / "speed.out"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    summary = predict_file(run, source, output, batch_size=BATCH_SIZE, devices="cpu",
                           buffer_size=buffer, progress=False)
    naive_seconds, naive = naive_loop(run, records[:n_naive])
    ours = [json.loads(line)["predicted_expression"]
            for line in output.read_text().splitlines()[:n_naive]]
    difference = float(np.abs(np.array(ours) - naive).max())
    assert difference < 1e-4, difference  # the same predictions either way
    return summary.n_records / summary.seconds, n_naive / naive_seconds, difference


def peak_mib() -> float:
    """This process's peak RSS. Not getrusage's ru_maxrss: Linux keeps that across exec, so a
    subprocess would report at least its parent's peak."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:"))) / 1024  # kB


def child(method: str, run_dir: str, source: str, output: str, buffer: str) -> None:
    if method == "predict":
        summary = predict_file(run_dir, source, output, batch_size=BATCH_SIZE, devices="cpu",
                               buffer_size=int(buffer), progress=False)
        assert summary.n_failed == 0
        records, seconds = summary.n_records, summary.seconds
    else:  # read every record into a list first (predict before it streamed)
        start = time.perf_counter()
        with open(source, encoding="utf-8") as handle:
            records = len([json.loads(line) for line in handle])
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "records": records, "peak_mib": peak_mib()}))


def measure(method: str, run: Run, source: Path, buffer: int, threads: int) -> dict:
    output = source.with_suffix(f".{method}.out")
    done = subprocess.run(
        [sys.executable, __file__, "--threads", str(threads), "--child", method,
         str(run.directory), str(source), str(output), str(buffer)],
        check=True, capture_output=True, text=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if method == "predict":
        with output.open(encoding="utf-8") as handle:
            result["lines"] = sum(1 for _ in handle)
    return result


KINDS = {  # name: (RNA bases, protein residues), each a (shortest, longest) range
    "transcript-length": ((200, 2000), (50, 400)),
    "short": ((50, 150), (20, 60)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer records (under a minute on 2 cores): 160 timed, 48 naive, "
                        "memory on 300 and 3,000 records with buffers of 128")
    parser.add_argument("--records", type=int, default=600,
                        help="records of each kind timed with predict")
    parser.add_argument("--naive-records", type=int, default=150,
                        help="of those, records timed with the naive loop")
    parser.add_argument("--memory-records", type=int, default=10_000,
                        help="N: peak memory on N and 10 N records")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, here and in the subprocesses (default: 1)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(*args.child)
        return
    if args.quick:
        args.records, args.naive_records, args.memory_records = 160, 48, 300
    buffer = 128 if args.quick else None  # None: predict's default, 64 batches
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = make_run(folder / "run")
        print(f"tiny preset, random weights, DNA window {run.dna_length} bp; {os.cpu_count()} "
              f"CPUs, {args.threads} torch thread(s), load average {os.getloadavg()[0]:.1f}")
        warm_up = synthetic_records(BATCH_SIZE, run.dna_length, *KINDS["short"], seed=2)
        speed(run, warm_up, 2, None, folder)  # kernels, allocator
        rates = {}
        for kind, (rna, protein) in KINDS.items():
            records = synthetic_records(args.records, run.dna_length, rna, protein)
            rates[kind] = rate, naive_rate, difference = speed(
                run, records, args.naive_records, buffer, folder)
            print(f"speed, {kind} records (RNA {rna[0]:,}-{rna[1]:,} bases, proteins of "
                  f"{protein[0]}-{protein[1]} residues):\n"
                  f"  predict {args.records:,} records: {rate:.1f} records/s (batches of "
                  f"{BATCH_SIZE}, length-sorted, inference mode)\n"
                  f"  naive loop {args.naive_records:,} records: {naive_rate:.1f} records/s (one "
                  f"record per forward, autograd on): {rate / naive_rate:.1f}x; predictions "
                  f"agree within {difference:.1e}")

        short = synthetic_records(1000, run.dna_length, *KINDS["short"], seed=1)
        sizes = (args.memory_records, 10 * args.memory_records)
        buffer_text = f"buffers of {buffer}" if buffer else "the default buffer (64 batches)"
        print(f"memory, peak RSS of a subprocess on short records, {buffer_text}"
              + (" (quick mode: 300 and 3,000 records instead of 10,000 and 100,000)"
                 if args.quick else "") + ":")
        peaks = {}
        for count in sizes:
            path = write_repeated(short, count, folder / f"memory_{count}.jsonl")
            streamed = measure("predict", run, path, buffer or 64 * BATCH_SIZE, args.threads)
            read_all = measure("read-all", run, path, 0, args.threads)
            assert streamed["records"] == streamed["lines"] == count  # nothing dropped
            peaks[count] = streamed["peak_mib"]
            streamed_rate = streamed["records"] / streamed["seconds"]
            print(f"  {count:>7,} records ({path.stat().st_size / 2**20:.0f} MiB): predict "
                  f"{streamed['peak_mib']:.0f} MiB ({streamed_rate:.0f} records/s); reading "
                  f"every record into a list, alone: {read_all['peak_mib']:.0f} MiB")
        print(f"  predict's peak grows {peaks[sizes[1]] - peaks[sizes[0]]:+.0f} MiB for 10x the "
              "records")
    rate, naive_rate, _ = rates["transcript-length"]
    print(f"predict: {rate:.0f} records/s ({rate / naive_rate:.1f}x vs naive)")


if __name__ == "__main__":
    main()
