"""Training and inference throughput of a preset on one GPU: samples/s, peak memory and achieved
TFLOP/s as a share of the device's bf16 dense peak.

The model is the preset's architecture with random weights (nothing is downloaded; speed and
memory do not depend on the values), fed random sequences at the longest input each encoder takes
(the paper preset: 196,608 bp of DNA, 2,048 NT-v2 tokens of RNA, 1,024 ESM-2 tokens of protein),
so every sample costs what the longest GTEx transcript would. Training: forward, MSE, backward
and an AdamW step under bfloat16 autocast (the `bf16-mixed` the paper presets train in) at the
largest micro-batch that fits (doubling from 1 until out of memory); inference: forward under
`torch.inference_mode` and autocast. FLOPs are counted by `torch.utils.flop_counter` on one
sample's forward and backward (matmuls, convolutions, attention), the same operators the GPU runs.
Usage:
    python benchmarks/gpu.py [--preset paper] [--gradient-checkpointing] [--steps 5]
    python benchmarks/gpu.py --device cpu --preset tiny --quick   # the code path, on a CPU
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from isoformer.constants import GTEX_TRAINING_TRANSCRIPTS
from isoformer.model.config import load_preset
from isoformer.model.isoformer import IsoFormer
from isoformer.model.prediction import predict_batch
from isoformer.training.memory import count_flops, random_init_config
from isoformer.training.module import masked_mse

# bf16 dense tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0,
                    "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}
LETTERS = {"dna_sequence": "ACGT", "rna_sequence": "ACGT",
           "protein_sequence": "ACDEFGHIKLMNPQRSTVWY"}


def device_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def longest_records(model: IsoFormer, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Random records at the longest input of each encoder (DNA at the model's window)."""
    rng = random.Random(seed)
    # max_length: the longest input in bases / residues, e.g. NT-v2's 2,047 six-mers + <cls>.
    lengths = {"dna_sequence": model.config.dna_length or model.encoders["dna"].max_length,
               "rna_sequence": model.encoders["rna"].max_length,
               "protein_sequence": model.encoders["protein"].max_length}
    return [{key: "".join(rng.choice(LETTERS[key]) for _ in range(length))
             for key, length in lengths.items()} for _ in range(count)]


def train_step(model: IsoFormer, optimizer: torch.optim.Optimizer, records: list[dict]) -> None:
    with torch.autocast(model.device.type, dtype=torch.bfloat16):
        predictions = predict_batch(model, records)
    loss = masked_mse(predictions, torch.zeros_like(predictions))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def infer_step(model: IsoFormer, records: list[dict], no_grad: Any = torch.inference_mode
               ) -> None:
    with no_grad(), torch.autocast(model.device.type, dtype=torch.bfloat16):
        predict_batch(model, records)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Any, device: torch.device, steps: int) -> float:
    """Seconds per step over `steps` after one warm-up step."""
    step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def largest_fitting(run_at: Any, device: torch.device, limit: int) -> tuple[int, float]:
    """The largest power-of-two micro-batch <= limit whose step runs, and its seconds per step."""
    best = None
    size = 1
    while size <= limit:
        try:
            seconds = run_at(size)
        except torch.OutOfMemoryError:
            break
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        best = (size, seconds)
        size *= 2
    if best is None:
        raise SystemExit("gpu.py: even micro-batch 1 does not fit on this device")
    return best


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    config, notes = random_init_config(load_preset(args.preset).model)
    for note in notes:
        print(f"note: {note}")
    for encoder in config.encoders.values():
        encoder.gradient_checkpointing = args.gradient_checkpointing
    model = IsoFormer(config).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    one = longest_records(model, 1)
    model.train()
    train_flops = count_flops(lambda: train_step(model, optimizer, one))
    model.eval()
    # Counted under no_grad: the flop counter fails under inference_mode with CPU autocast
    # (torch 2.13); the operators are the same.
    infer_flops = count_flops(lambda: infer_step(model, one, torch.no_grad))
    limit = 1 if args.quick else args.max_micro_batch

    def train_at(size: int) -> float:
        records = longest_records(model, size)
        model.train()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        return timed(lambda: train_step(model, optimizer, records), device, args.steps)

    def infer_at(size: int) -> float:
        records = longest_records(model, size)
        model.eval()
        return timed(lambda: infer_step(model, records), device, args.steps)

    train_batch, train_seconds = largest_fitting(train_at, device, limit)
    train_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    infer_batch, infer_seconds = largest_fitting(infer_at, device, 4 * limit)
    peak = device_peak_tflops(device)
    result = {"preset": args.preset, "device": torch.cuda.get_device_name(device)
              if device.type == "cuda" else "cpu",
              "gradient_checkpointing": args.gradient_checkpointing,
              "parameters": sum(p.numel() for p in model.parameters())}
    for name, batch, seconds, flops in (("train", train_batch, train_seconds, train_flops),
                                        ("inference", infer_batch, infer_seconds, infer_flops)):
        rate = batch / seconds
        tflops = flops * rate / 1e12
        result[name] = {"micro_batch": batch, "samples_per_s": rate,
                        "tflops_per_sample": flops / 1e12, "achieved_tflops": tflops,
                        "share_of_bf16_peak": None if peak is None else tflops / peak}
    result["train"]["peak_memory_gib"] = None if train_peak is None else train_peak / 2**30
    result["train"]["gtex_epoch_hours"] = (GTEX_TRAINING_TRANSCRIPTS
                                           / result["train"]["samples_per_s"] / 3600)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per micro-batch")
    parser.add_argument("--max-micro-batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="micro-batch 1 only, 1 timed step")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 1
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu.py: no CUDA device here (use --device cpu to check the code path)")
    result = measure(args)
    for name in ("train", "inference"):
        part = result[name]
        share = part["share_of_bf16_peak"]
        print(f"{name}: micro-batch {part['micro_batch']}, {part['samples_per_s']:.2f} samples/s, "
              f"{part['achieved_tflops']:.1f} TFLOP/s"
              + ("" if share is None else f" ({100 * share:.0f}% of bf16 dense peak)"))
    train = result["train"]
    if train["peak_memory_gib"] is not None:
        print(f"train: peak memory {train['peak_memory_gib']:.1f} GiB; one epoch of "
              f"{GTEX_TRAINING_TRANSCRIPTS:,} transcripts at the longest inputs "
              f"{train['gtex_epoch_hours']:.2f} h")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
