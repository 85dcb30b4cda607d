"""`python -m bench [name ...]`: run every benchmark module in turn, one process each.

Each prints `name: value unit` lines. Benchmarks run one at a time (2-core machines: parallel
runs would measure each other).
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
HELPERS = ("__init__", "__main__", "common", "ingest_fleet")  # the modules that are no benchmark


def main(argv: list[str]) -> int:
    """Run the named benchmark modules, or all of them."""
    names = argv or sorted(p.stem for p in HERE.glob("*.py") if p.stem not in HELPERS)
    failed = []
    for name in names:
        print(f"# bench.{name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        print(f"# bench.{name} took {time.monotonic() - started:.0f} s (exit {code})", file=sys.stderr, flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
