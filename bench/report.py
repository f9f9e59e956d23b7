"""What the benchmarks share: timing C-FINDs, and writing the figures of a
run to one JSON file with the machine it ran on."""

import json
import os
import statistics
import time


def writeResults(path, **figures):
    """Write ``figures`` (plus the machine's name and CPU count) to ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": os.uname().nodename, "cpus": os.cpu_count(), **figures}, f, indent=2)
    print(f"written {path}")


async def findMedian(association, sopClass, query, rounds=20):
    """``{"median_ms", "matches"}`` of ``rounds`` C-FINDs of ``query`` on an
    open association (our client), each timed from request to final response."""
    times, counts = [], []
    for _ in range(rounds):
        matches = []
        started = time.perf_counter()
        status = await association.find(sopClass, query, lambda data, syntax: matches.append(data))
        times.append(time.perf_counter() - started)
        counts.append(len(matches))
        assert status == 0, hex(status)
    return {"median_ms": round(statistics.median(times) * 1000, 2), "matches": counts[0]}
