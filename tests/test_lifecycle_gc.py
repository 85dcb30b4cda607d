"""The ingest process's garbage-collector tuning (run in a child: it changes process-wide state)."""
from __future__ import annotations

import subprocess
import sys

from runtime.lifecycle import GC_THRESHOLDS


def test_tuning_freezes_start_up_objects_and_raises_the_thresholds():
    code = ("import gc; from runtime.lifecycle import tune_gc_for_latency; before = gc.get_freeze_count(); "
            "tune_gc_for_latency(); print(before, gc.get_freeze_count() > 1000, gc.get_threshold())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 2)
    assert out[0] == "0" and out[1] == "True"
    assert out[2].strip() == str(GC_THRESHOLDS)
