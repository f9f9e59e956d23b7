"""Where the benchmarks put their figures: one JSON file per run, with the
machine it ran on."""

import json
import os


def writeResults(path, **figures):
    """Write ``figures`` (plus the machine's name and CPU count) to ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": os.uname().nodename, "cpus": os.cpu_count(), **figures}, f, indent=2)
    print(f"written {path}")
