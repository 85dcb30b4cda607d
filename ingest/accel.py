"""Compiled ingest hot path: the NMEA decoder, the fix assembly, the plausibility chain, the
per-vehicle ingest and the preparation of each Redis write, compiled in place by Cython into
extension modules.

The modules stay plain Python: Cython compiles the same source (no annotations, no second
implementation), and Python imports the extension in place of the ``.py`` when one is built.
Measured with ``make bench`` on the 2-core machine: the ingest's sustained rate rose by about a
quarter (README, Benchmarks). Where no C compiler is present the build reports it and the ingest
runs the pure-Python modules, the same behaviour, slower.

``python -m ingest.accel`` builds the modules (``make`` does, before demo, test and bench);
``python -m ingest.accel --clean`` removes the built files. A built module older than its source
is stale: Python would import it and run the old code, so ``stale()`` lists them and the test
session refuses to start on one (``make`` rebuilds).
"""
from __future__ import annotations

import importlib.machinery
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("ingest.fixpack", "ingest.nmea", "ingest.fixes", "ingest.plausibility", "ingest.vehicles")


def source(module: str) -> Path:
    """The ``.py`` file of one of MODULES."""
    return ROOT / (module.replace(".", "/") + ".py")


def built(module: str) -> list[Path]:
    """The extension files built for a module (normally one)."""
    src = source(module)
    return [src.with_name(src.stem + suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES
            if src.with_name(src.stem + suffix).exists()]


def is_compiled(module_object) -> bool:
    """Whether an imported module is the compiled extension rather than the ``.py``."""
    return not str(getattr(module_object, "__file__", "")).endswith(".py")


def stale() -> list[Path]:
    """Built files older than their source (Python would still import them)."""
    out = []
    for module in MODULES:
        mtime = source(module).stat().st_mtime
        out.extend(path for path in built(module) if path.stat().st_mtime < mtime)
    return out


def clean() -> None:
    """Remove the built extension files and Cython's generated C."""
    for module in MODULES:
        for path in built(module):
            path.unlink()
        source(module).with_suffix(".c").unlink(missing_ok=True)


def compiler() -> str | None:
    """The C compiler Python's build would use, if it is on PATH."""
    import sysconfig

    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def build() -> bool:
    """Compile MODULES in place; True when every one is built and fresh. Without a compiler or
    Cython, report it and leave the pure-Python modules in use (False)."""
    if not stale() and all(built(m) for m in MODULES):
        print("accel: compiled ingest modules are up to date")
        return True
    clean()
    if compiler() is None:
        print("accel: no C compiler found: the ingest runs its pure-Python modules (slower)")
        return False
    try:
        from Cython.Build import cythonize
        from setuptools import Distribution
        from setuptools.command.build_ext import build_ext
    except ImportError as exc:
        print(f"accel: cannot compile ({exc}): the ingest runs its pure-Python modules (slower)")
        return False
    began = time.monotonic()
    print(f"accel: compiling {len(MODULES)} ingest modules with Cython (about a minute) ...", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="accel-"))
    try:
        sources = [str(source(m).relative_to(ROOT)) for m in MODULES]
        cwd = os.getcwd()
        os.chdir(ROOT)
        try:
            extensions = cythonize(sources, language_level=3, quiet=True, nthreads=os.cpu_count() or 1)
            dist = Distribution({"ext_modules": extensions})
            cmd = build_ext(dist)
            cmd.inplace = True
            cmd.build_temp = str(workdir / "temp")
            cmd.parallel = os.cpu_count() or 1
            cmd.ensure_finalized()
            cmd.run()
        finally:
            os.chdir(cwd)
    except Exception as exc:  # noqa: BLE001 - a failed build leaves the pure-Python modules in use
        clean()
        print(f"accel: compiling failed ({exc}): the ingest runs its pure-Python modules (slower)")
        return False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        for module in MODULES:
            source(module).with_suffix(".c").unlink(missing_ok=True)
    ok = all(built(m) for m in MODULES) and not stale()
    print(f"accel: {'compiled' if ok else 'NOT all compiled'} in {time.monotonic() - began:.0f} s: "
          f"{', '.join(MODULES)}")
    return ok


def main(argv: list[str]) -> int:
    if argv[1:] == ["--clean"]:
        clean()
        print("accel: removed the compiled ingest modules")
        return 0
    build()
    return 0  # a machine without a compiler still runs everything, in pure Python


if __name__ == "__main__":
    sys.exit(main(sys.argv))
