"""Query/retrieve benchmark: C-FIND latency on a large index, C-MOVE and
C-GET throughput against DCMTK.

    python bench/queryretrieve.py [--index-images 100000] [--small 5000] [--large 1000]
                                  [--out bench/out/queryretrieve.json]

How the index is built: a pacs working folder gets the real objects (the
small and large corpora, C-STOREd by DCMTK storescu, so their files exist),
then ``--index-images`` synthetic image rows (1000-image patients' worth of
patients, 2 studies each, 5 series of 10 images, dates over ten years,
names from a list of surnames) written by ``Index.storeMany`` straight into
the same SQLite index - the query paths are the same, the files of the
synthetic rows do not exist.

C-FIND: one association from our own client, each query 20 times, the
median time from request to final response.  C-MOVE: DCMTK movescu asks
pacs to move a corpus to DCMTK storescp; C-GET: DCMTK getscu pulls it;
reference: DCMTK storescu sending the same files from disk to the same
storescp, in the same run.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.report import findMedian, writeResults  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from pacscore.config.loader import loadConfiguration  # noqa: E402
from pacscore.control.offline import openIndex  # noqa: E402
from pacscore.db.drivers import findDriver  # noqa: E402
from pacscore.db.records import ImageRecord  # noqa: E402
from pacscore.dicom.client import associate  # noqa: E402
from pacscore.dicom.models import PATIENT_ROOT_FIND, STUDY_ROOT_FIND  # noqa: E402
from pacscore.testing.corpus import generateCorpus  # noqa: E402
from tests.interop.peers import StorescpServer  # noqa: E402
from tests.interop.server import PacsServer, dcmtkEnvironment, dcmtkTool  # noqa: E402

SURNAMES = ["SMITH", "JONES", "DOE", "MUELLER", "GARCIA", "MARTIN", "ROSSI", "NOVAK", "KOWALSKI", "DUBOIS",
            "SILVA", "JANSEN", "NIELSEN", "BERG", "HORVATH", "POPOV", "MURPHY", "WALSH", "KIM", "TANAKA"]
CT = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"

PATIENT_ID, PATIENT_NAME, BIRTH_DATE, SEX = 0x00100020, 0x00100010, 0x00100030, 0x00100040
STUDY_UID, STUDY_DATE, STUDY_TIME, ACCESSION = 0x0020000D, 0x00080020, 0x00080030, 0x00080050
SERIES_UID, SERIES_NUMBER, MODALITY = 0x0020000E, 0x00200011, 0x00080060
SOP_UID, SOP_CLASS, INSTANCE_NUMBER = 0x00080018, 0x00080016, 0x00200013


def syntheticRecords(count, seed=1):
    """``count`` ImageRecords: 2 studies x 5 series x 10 images per patient."""
    rng = random.Random(seed)
    perPatient = 100
    for p in range(count // perPatient):
        patientID = f"SYN{p:07d}"
        name = f"{rng.choice(SURNAMES)}^{rng.choice(SURNAMES).title()}{p}"
        for s in range(2):
            studyUID = f"1.2.826.0.1.3680043.8.498.9.{p}.{s}"
            date = f"{2015 + rng.randrange(10)}{1 + rng.randrange(12):02d}{1 + rng.randrange(28):02d}"
            for r in range(5):
                seriesUID = f"{studyUID}.{r}"
                for i in range(10):
                    sopUID = f"{seriesUID}.{i}"
                    yield ImageRecord({
                        PATIENT_ID: patientID, PATIENT_NAME: name, BIRTH_DATE: "19600101", SEX: "O",
                        STUDY_UID: studyUID, STUDY_DATE: date, STUDY_TIME: "101500",
                        ACCESSION: f"S{p:07d}{s}", SERIES_UID: seriesUID, SERIES_NUMBER: str(r + 1),
                        MODALITY: "CT", SOP_UID: sopUID, SOP_CLASS: CT, INSTANCE_NUMBER: str(i + 1)},
                        "MAG0", f"synthetic/{patientID}/{sopUID}.dcm")


def storeInto(server, paths):
    for start in range(0, len(paths), 2000):
        result = server.store(*paths[start:start + 2000])
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])


def addSyntheticRows(server, count):
    configuration = loadConfiguration(server.workdir, server.workdir)
    index = openIndex(*findDriver(None, configuration), configuration)
    index.createTables()
    started = time.perf_counter()
    index.storeMany(syntheticRecords(count))
    return time.perf_counter() - started


def identifier(level, **keys):
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


async def findLatencies(reactor, server, seriesUID):
    association = await associate(reactor, "127.0.0.1", server.port, "BENCH", server.ae,
                                  [(PATIENT_ROOT_FIND, [EXPLICIT, IMPLICIT]), (STUDY_ROOT_FIND, [EXPLICIT, IMPLICIT])])
    queries = {
        "patient by exact ID": (PATIENT_ROOT_FIND, identifier("PATIENT", PatientID="SYN0000042", PatientName="")),
        "patient by name wildcard": (PATIENT_ROOT_FIND, identifier("PATIENT", PatientName="DOE*", PatientID="")),
        "studies by date range": (STUDY_ROOT_FIND, identifier("STUDY", StudyDate="20200301-20200331",
                                                              StudyInstanceUID="", PatientName="",
                                                              AccessionNumber="")),
        "image list of one series": (STUDY_ROOT_FIND, identifier("IMAGE", SeriesInstanceUID=seriesUID,
                                                                 SOPInstanceUID="", InstanceNumber="")),
    }
    results = {}
    for name, (sopClass, query) in queries.items():
        results[name] = await findMedian(association, sopClass, query)
        print(f"  C-FIND {name:28s} median {results[name]['median_ms']:7.2f} ms, {results[name]['matches']} matches",
              flush=True)
    await association.release()
    return results


def generateCorpora(workdir, small, large):
    """The 64x64 corpus (10 patients, 5 series each) and the 512x512 one (5
    patients, 2 series each) of about ``small`` and ``large`` images."""
    print("generating corpora ...", flush=True)
    return (generateCorpus(os.path.join(workdir, "small"), patients=10, studiesPerPatient=1,
                           seriesPerStudy=5, imagesPerSeries=max(1, small // 50)),
            generateCorpus(os.path.join(workdir, "large"), patients=5, studiesPerPatient=1,
                           seriesPerStudy=2, imagesPerSeries=max(1, large // 10), rows=512, columns=512,
                           namePrefix="Large"))


def timed(command):
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=dcmtkEnvironment())
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {result.stdout[-1000:]}{result.stderr[-1000:]}")
    return elapsed


def transfer(server, storescp, label, images, workdir):
    paths = [i.path for i in images]
    count = len(paths)
    studies = sorted({i.studyUID for i in images})
    storescp.reset()
    reference = timed([dcmtkTool("storescu"), "-aec", storescp.aet, "127.0.0.1", str(storescp.port), *paths])
    storescp.reset()
    studyList = "\\".join(studies)  # one C-MOVE/C-GET for all: a list of UIDs
    move = timed([dcmtkTool("movescu"), "-S", "-aec", server.ae, "-aem", storescp.aet,
                  "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={studyList}",
                  "127.0.0.1", str(server.port)])
    moved = len(storescp.files())
    storescp.reset()
    out = tempfile.mkdtemp(dir=workdir)
    get = timed([dcmtkTool("getscu"), "-S", "-aec", server.ae, "-od", out,
                 "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={studyList}",
                 "127.0.0.1", str(server.port)])
    got = len(os.listdir(out))
    shutil.rmtree(out, ignore_errors=True)
    if moved != count or got != count:
        raise RuntimeError(f"{label}: moved {moved}, got {got} of {count}")
    row = {"corpus": label, "images": count, "storescu_images_per_s": round(count / reference, 1),
           "move_images_per_s": round(count / move, 1), "get_images_per_s": round(count / get, 1)}
    row["move_ratio"] = round(row["move_images_per_s"] / row["storescu_images_per_s"], 3)
    row["get_ratio"] = round(row["get_images_per_s"] / row["storescu_images_per_s"], 3)
    print(f"  {label:>8} x{count:5d}: storescu {row['storescu_images_per_s']:7.1f} img/s | C-MOVE "
          f"{row['move_images_per_s']:7.1f} img/s ({row['move_ratio']:.0%}) | C-GET "
          f"{row['get_images_per_s']:7.1f} img/s ({row['get_ratio']:.0%})", flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index-images", type=int, default=100000)
    parser.add_argument("--small", type=int, default=5000, help="64x64 images moved")
    parser.add_argument("--large", type=int, default=1000, help="512x512 images moved")
    parser.add_argument("--out", default="bench/out/queryretrieve.json")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pacs-bench-qr-")
    server = PacsServer(os.path.join(workdir, "pacs"))
    storescp = StorescpServer(os.path.join(workdir, "storescp"), aet="STORESCP")
    server.addNode(storescp.aet, storescp.port)
    try:
        small, large = generateCorpora(workdir, args.small, args.large)
        print(f"writing {args.index_images} synthetic index rows ...", flush=True)
        seconds = addSyntheticRows(server, args.index_images)
        print(f"  {args.index_images / seconds:.0f} rows/s", flush=True)
        server.start()
        storescp.start()
        print("storing the real objects with storescu ...", flush=True)
        storeInto(server, [i.path for i in small + large])
        total = args.index_images + len(small) + len(large)
        print(f"C-FIND on an index of {total} images:", flush=True)
        finds = runFinds(server, small[0].seriesUID)
        print("C-MOVE / C-GET to DCMTK storescp:", flush=True)
        transfers = [transfer(server, storescp, "64x64", small, workdir),
                     transfer(server, storescp, "512x512", large, workdir)]
    finally:
        server.stop()
        storescp.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    writeResults(args.out, index_images=total, find=finds, transfer=transfers)


def runFinds(server, seriesUID):
    """The C-FIND measurements, in a child process with its own reactor."""
    output = subprocess.run([sys.executable, __file__, "--find-only", str(server.port), server.ae, seriesUID],
                            stdout=subprocess.PIPE, text=True)
    if output.returncode != 0:
        raise RuntimeError("the C-FIND measurement failed")
    return json.loads(output.stdout)


def findOnly(port, ae, seriesUID):
    """Child process: measure, progress on stderr, results as JSON on stdout."""
    server = argparse.Namespace(port=int(port), ae=ae)

    async def measure(reactor):
        stdout, sys.stdout = sys.stdout, sys.stderr
        try:
            found = await findLatencies(reactor, server, seriesUID)
        finally:
            sys.stdout = stdout
        print(json.dumps(found))
    task.react(lambda reactor: defer.ensureDeferred(measure(reactor)))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--find-only":
        findOnly(*sys.argv[2:5])
    else:
        main()
