"""Memory sizes as people write them ("80GB", "80GiB", "24G") and as the reports print them;
FLOP counts as the reports print them."""

from __future__ import annotations

import re

from isoformer.errors import IsoformerError

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """"80GB" -> 80 x 10^9 bytes; "80GiB" and "80G" -> 80 x 2^30; "512MiB", "1.5TB", "1000".

    KB / MB / GB / TB are decimal, KiB / MiB / GiB / TiB and the one-letter K / M / G / T binary
    (as `free -g`, Slurm and Docker read them); a bare number is bytes; case does not matter.
    """
    match = _SIZE_PATTERN.match(str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise IsoformerError(
            f"memory size {text!r}: write a number and a unit, e.g. 80GB (10^9 bytes), 80GiB or "
            "80G (2^30 bytes), 512MiB"
        )
    size = float(match.group(1)) * _SIZE_UNITS[unit]
    if size < 1:
        raise IsoformerError(f"memory size {text!r} must be at least one byte")
    return int(size)


def format_bytes(size: float) -> str:
    """Bytes in binary units: "12.3 GiB", "512 MiB", "0 B"."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(size) >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{size:.0f} B"


def format_flops(flops: float) -> str:
    """FLOPs in decimal units, three significant digits: "1.23 TFLOP", "456 GFLOP", "0 FLOP"."""
    for unit, scale in (("ZFLOP", 1e21), ("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12),
                        ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if abs(flops) >= scale:
            value = flops / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{flops:.0f} FLOP"
