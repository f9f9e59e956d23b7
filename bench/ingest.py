"""C-STORE ingest benchmark: DCMTK storescu sending a generated corpus into
pacs (index and fsync on) and, in the same run, into DCMTK ``storescp
--fork`` (no index: the upper bound), over 1 and 4 associations.

    python bench/ingest.py [--small 5000] [--large 1000] [--single 200] [--rounds 2]
                           [--out bench/out/ingest.json]

Prints images/s, MB/s and the ratio pacs/storescp for 64x64 and 512x512 CT,
and the disk cache flushes per image each server caused (the last round's,
counted on the block device of the run's folder).  Then ``--single`` 64x64
images go one association each (one storescu per image, in turn), as many
modalities send: that measures association set-up.

Everything received is kept until the whole run ends: creating files next to
thousands of just-deleted ones is slow (ext4 without a journal skips every
inode freed in the last 1-6 minutes, up to 1 ms a file), which would handicap
whichever server runs after a deletion. The run happens under $TMPDIR; do not
start it within minutes of deleting many files there (a test run does), or
the reference, which creates its files on the answer path, measures the
inode allocator rather than itself.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.report import writeResults  # noqa: E402
from pacscore.testing.corpus import generateCorpus  # noqa: E402
from tests.interop.server import PacsServer, dcmtkEnvironment, dcmtkTool, freePort  # noqa: E402


def sendAll(port, ae, paths, associations):
    """storescu over ``associations`` parallel associations (0: one
    association per image, one after the other); returns seconds."""
    if associations:
        waves = [[paths[n::associations] for n in range(associations)]]  # storescus at once
    else:
        waves = [[[path]] for path in paths]
    start = time.perf_counter()
    for chunks in waves:
        processes = [subprocess.Popen([dcmtkTool("storescu"), "-aec", ae, "127.0.0.1", str(port), *chunk],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dcmtkEnvironment())
                     for chunk in chunks]
        for process in processes:
            _, err = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"storescu failed: {err.decode()[-2000:]}")
    return time.perf_counter() - start


def waitForPort(port, timeout=10):
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def intoStorescp(workdir, paths, associations):
    out = tempfile.mkdtemp(dir=workdir)
    port = freePort()
    process = subprocess.Popen([dcmtkTool("storescp"), "--fork", "-aet", "PACS", "-od", out, str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dcmtkEnvironment())
    try:
        waitForPort(port)
        return sendAll(port, "PACS", paths, associations)
    finally:
        process.terminate()
        process.wait()


def intoPacs(workdir, paths, associations):
    server = PacsServer(tempfile.mkdtemp(dir=workdir))
    server.start()
    try:
        return sendAll(server.port, server.ae, paths, associations)
    finally:
        server.stop()


def deviceFlushes(path):
    """Cache flushes completed so far by the block device holding ``path``
    (field 16 of its /sys stat file), or None where the kernel does not say."""
    device = os.stat(path).st_dev
    try:
        with open(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}/stat") as f:
            fields = f.read().split()
    except OSError:
        return None
    return int(fields[15]) if len(fields) > 15 else None


def measure(workdir, label, images, rounds, associationCounts=(1, 4)):
    """Each count of ``associationCounts`` (0: one per image), into both
    servers, best of ``rounds``; prints and returns one row per count."""
    paths = [i.path for i in images]
    megabytes = sum(os.path.getsize(p) for p in paths) / 1e6
    results = []
    for associations in associationCounts:
        best = {"pacs": None, "storescp": None}
        flushes = {}
        for _ in range(rounds):
            for name, run in (("storescp", intoStorescp), ("pacs", intoPacs)):
                os.sync()  # the previous run's (or the corpus's) dirty pages must not be flushed during this one
                before = deviceFlushes(workdir)
                seconds = run(workdir, paths, associations)
                after = deviceFlushes(workdir)
                if before is not None and after is not None:
                    flushes[name] = round((after - before) / len(paths), 2)
                best[name] = seconds if best[name] is None else min(best[name], seconds)
        row = {"corpus": label, "images": len(paths), "megabytes": round(megabytes, 1),
               "associations": associations}
        for name, seconds in best.items():
            row[f"{name}_images_per_s"] = round(len(paths) / seconds, 1)
            row[f"{name}_mb_per_s"] = round(megabytes / seconds, 1)
            row[f"{name}_flushes_per_image"] = flushes.get(name)
        row["ratio"] = round(row["pacs_images_per_s"] / row["storescp_images_per_s"], 3)
        results.append(row)
        how = f"{associations} assoc" if associations else "1 assoc/image"
        print(f"{label:>8} x{len(paths):5d} {how}: pacs {row['pacs_images_per_s']:8.1f} img/s "
              f"{row['pacs_mb_per_s']:7.1f} MB/s {row['pacs_flushes_per_image']} flushes/img | storescp --fork "
              f"{row['storescp_images_per_s']:8.1f} img/s {row['storescp_mb_per_s']:7.1f} MB/s | "
              f"ratio {row['ratio']:.0%}", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=5000, help="64x64 images")
    parser.add_argument("--large", type=int, default=1000, help="512x512 images")
    parser.add_argument("--single", type=int, default=200, help="64x64 images sent one association each")
    parser.add_argument("--rounds", type=int, default=2, help="best of N per configuration")
    parser.add_argument("--out", default="bench/out/ingest.json")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pacs-bench-")
    try:
        print("generating corpora ...", flush=True)
        small = generateCorpus(os.path.join(workdir, "small"), patients=10, studiesPerPatient=2,
                               seriesPerStudy=5, imagesPerSeries=max(1, args.small // 100), rows=64, columns=64)
        large = generateCorpus(os.path.join(workdir, "large"), patients=5, studiesPerPatient=2,
                               seriesPerStudy=2, imagesPerSeries=max(1, args.large // 20), rows=512, columns=512)
        results = (measure(workdir, "64x64", small, args.rounds) + measure(workdir, "512x512", large, args.rounds)
                   + measure(workdir, "64x64", small[:args.single], args.rounds, associationCounts=(0,)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    writeResults(args.out, results=results)


if __name__ == "__main__":
    main()
