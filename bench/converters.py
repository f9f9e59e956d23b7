"""Converter benchmark: C-STORE ingest with five typical import converters
and two export converters active, as a ratio to the same run without
converters.

    python bench/converters.py [--images 2000] [--associations 1 4] [--out bench/out/converters.json]

Both runs: DCMTK storescu sends the same 64x64 CT corpus to a fresh pacs.
The converters (dicom.ini):

    ImportConverter0 = set 0008,0080 to "RADIOLOGY %V0008,0070"      (institution name)
    ImportConverter1 = ifempty "%V0008,1030"; set 0008,1030 to "unknown study"
    ImportConverter2 = set x to "%V0010,0020[0,2]"; set 0010,4000 to "from %u, site %x"
    ImportConverter3 = ifequal "%V0008,0060", "MR"; destroy          (never true here: all CT)
    ImportConverter4 = delete 0010,1040                              (patient address)
    ExportConverter0 = forward to SINK
    ExportConverter1 = ifnotequal "%m", "CT"; stop; nop CT %o from %u
    ForwardAssociationLevel = STUDY   (one association per study, as routers set it;
                                       Conquest's default IMAGE opens one per object)

SINK is a DCMTK storescp; with export converters the run ends when the last
object is received, so the figure includes forwarding every object. Each
configuration (import only, export only, both) is compared with a run
without converters.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.report import writeResults  # noqa: E402
from bench.ingest import sendAll  # noqa: E402
from pacscore.testing.corpus import generateCorpus  # noqa: E402
from tests.interop.peers import StorescpServer  # noqa: E402
from tests.interop.server import PacsServer  # noqa: E402

IMPORT = {
    "ImportConverters": "5",
    "ImportConverter0": 'set 0008,0080 to "RADIOLOGY %V0008,0070"',
    "ImportConverter1": 'ifempty "%V0008,1030"; set 0008,1030 to "unknown study"',
    "ImportConverter2": 'set x to "%V0010,0020[0,2]"; set 0010,4000 to "from %u, site %x"',
    "ImportConverter3": 'ifequal "%V0008,0060", "MR"; destroy',
    "ImportConverter4": "delete 0010,1040",
}
EXPORT = {
    "ExportConverters": "2",
    "ForwardAssociationLevel": "STUDY",
    "ExportConverter0": "forward to SINK",
    "ExportConverter1": 'ifnotequal "%m", "CT"; stop; nop CT %o from %u',
}
CONFIGURATIONS = (("5 import converters", IMPORT, False), ("2 export converters", EXPORT, True),
                  ("5 import + 2 export converters", {**IMPORT, **EXPORT}, True))


def ingest(workdir, paths, associations, ini, sink=None):
    """Seconds from the first C-STORE until every object is stored (and,
    with a sink, received by it)."""
    server = PacsServer(tempfile.mkdtemp(dir=workdir), ini=ini)
    if sink is not None:
        sink.reset()
        server.addNode("SINK", sink.port)
    server.start()
    try:
        started = time.perf_counter()
        sendAll(server.port, server.ae, paths, associations)
        if sink is not None:
            deadline = time.monotonic() + 600
            while len(sink.files()) < len(paths):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(sink.files())} of {len(paths)} objects were forwarded")
                time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--associations", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--out", default="bench/out/converters.json")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pacs-bench-conv-")
    sink = StorescpServer(os.path.join(workdir, "sink"), aet="SINK")
    results = []
    try:
        images = generateCorpus(os.path.join(workdir, "corpus"), patients=10, studiesPerPatient=2,
                                seriesPerStudy=5, imagesPerSeries=max(1, args.images // 100))
        paths = [i.path for i in images]
        sink.start()
        for associations in args.associations:
            plain = ingest(workdir, paths, associations, {})
            for label, ini, forwarding in CONFIGURATIONS:
                converted = ingest(workdir, paths, associations, ini, sink if forwarding else None)
                row = {"images": len(paths), "associations": associations, "converters": label,
                       "plain_images_per_s": round(len(paths) / plain, 1),
                       "converters_images_per_s": round(len(paths) / converted, 1),
                       "ratio": round(plain / converted, 3)}
                results.append(row)
                print(f"64x64 x{len(paths)} {associations} assoc: no converters {row['plain_images_per_s']:7.1f} "
                      f"img/s, {label} {row['converters_images_per_s']:7.1f} img/s, ratio {row['ratio']:.0%}",
                      flush=True)
    finally:
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    writeResults(args.out, results=results)


if __name__ == "__main__":
    main()
