"""Shared helpers for benchmarks: every figure is printed as one `name: value unit` line."""
from __future__ import annotations

import math
import sys


def emit(name: str, value: float, unit: str) -> None:
    """Print one benchmark figure as `name: value unit` and flush at once."""
    text = f"{value:.3f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"
    print(f"{name}: {text} {unit}", flush=True)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def progress(message: str) -> None:
    """Show progress of a long benchmark on stderr, so stdout keeps only figures."""
    print(message, file=sys.stderr, flush=True)
