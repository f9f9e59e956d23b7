"""DICOMweb benchmark: STOW-RS ingest against DCMTK storescu C-STOREs,
WADO-RS retrieval against DCMTK getscu C-GETs, QIDO-RS latency, and pacs
routing over DICOMweb against DICOM (forwards by STOW-RS against C-STORE,
fetches by WADO-RS against C-MOVE), all on ``twistd -n pacs`` in the same
run.

    python bench/dicomweb.py [--small 2000] [--large 500] [--batch 50]
                             [--out bench/out/dicomweb.json]

Ingest: storescu sends a corpus to one pacs over one association; the same
files go to a second pacs as STOW-RS requests of ``--batch`` objects each,
one after the other on one HTTP connection (each answered once its objects
are on disk and indexed, as C-STOREs are).  Retrieval: getscu pulls the
corpus's studies from the first pacs (one C-GET of all of them) and the
WADO-RS client fetches each study as stored (``transfer-syntax=*``), one
request after the other on one connection, reading the multipart answers
as they stream.  QIDO-RS: the median of 20 study searches by patient ID
and 20 instance searches of a series, on one connection.  Routing: the
first pacs forwards the corpus (``dgate --movestudies``, one forward
action) to a fresh pacs by C-STORE and to another as a ``[DICOMwebServers]``
destination by STOW-RS; then two fresh ones fetch it study by study
(``dgate --movestudy``) from the first, by C-MOVE and by WADO-RS.
"""

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.queryretrieve import generateCorpora, storeInto, timed  # noqa: E402
from bench.report import writeResults  # noqa: E402
from tests.interop.index import column  # noqa: E402
from tests.interop.server import PacsServer, dcmtkTool  # noqa: E402

BOUNDARY = "pacs-bench"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def request(connection, method, path, body=None, headers=None):
    """Status and body length of one request on a kept-alive connection."""
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    length = 0
    while chunk := response.read(1 << 20):
        length += len(chunk)
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status}")
    return length


def stowBody(paths):
    parts = []
    for path in paths:
        with open(path, "rb") as f:
            parts.append(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f.read() + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def ingest(dicom, web, label, images, batch):
    paths = [i.path for i in images]
    started = time.perf_counter()
    storeInto(dicom, paths)
    cstore = time.perf_counter() - started
    bodies = [stowBody(paths[n:n + batch]) for n in range(0, len(paths), batch)]
    connection = http.client.HTTPConnection("127.0.0.1", web.webPort, timeout=600)
    started = time.perf_counter()
    for body in bodies:
        request(connection, "POST", "/dicom-web/studies", body, {"Content-Type": STOW_TYPE})
    stow = time.perf_counter() - started
    connection.close()
    megabytes = sum(os.path.getsize(p) for p in paths) / 1e6
    row = {"corpus": label, "images": len(paths), "storescu_images_per_s": round(len(paths) / cstore, 1),
           "stow_images_per_s": round(len(paths) / stow, 1), "stow_mb_per_s": round(megabytes / stow, 1)}
    row["stow_ratio"] = round(row["stow_images_per_s"] / row["storescu_images_per_s"], 3)
    print(f"  {label:>8} x{len(paths):5d}: storescu {row['storescu_images_per_s']:7.1f} img/s | STOW-RS "
          f"{row['stow_images_per_s']:7.1f} img/s, {row['stow_mb_per_s']:.1f} MB/s ({row['stow_ratio']:.0%})",
          flush=True)
    return row


def retrieve(server, label, images, workdir):
    studies = sorted({i.studyUID for i in images})
    out = tempfile.mkdtemp(dir=workdir)
    get = timed([dcmtkTool("getscu"), "-S", "-aec", server.ae, "-od", out, "-k", "QueryRetrieveLevel=STUDY",
                 "-k", f"StudyInstanceUID={chr(92).join(studies)}", "127.0.0.1", str(server.port)])
    got = len(os.listdir(out))
    shutil.rmtree(out, ignore_errors=True)
    connection = http.client.HTTPConnection("127.0.0.1", server.webPort, timeout=600)
    started = time.perf_counter()
    received = sum(request(connection, "GET", f"/dicom-web/studies/{study}", headers={"Accept": AS_STORED})
                   for study in studies)
    wado = time.perf_counter() - started
    connection.close()
    if got != len(images):
        raise RuntimeError(f"{label}: getscu got {got} of {len(images)}")
    row = {"corpus": label, "images": len(images), "getscu_images_per_s": round(len(images) / get, 1),
           "wado_images_per_s": round(len(images) / wado, 1), "wado_mb_per_s": round(received / 1e6 / wado, 1)}
    row["wado_ratio"] = round(row["wado_images_per_s"] / row["getscu_images_per_s"], 3)
    print(f"  {label:>8} x{len(images):5d}: getscu {row['getscu_images_per_s']:7.1f} img/s | WADO-RS "
          f"{row['wado_images_per_s']:7.1f} img/s, {row['wado_mb_per_s']:.1f} MB/s ({row['wado_ratio']:.0%})",
          flush=True)
    return row


def searches(server, images):
    connection = http.client.HTTPConnection("127.0.0.1", server.webPort, timeout=600)
    found = {}
    for name, path in (("studies_by_patient", f"/dicom-web/studies?PatientID={images[0].patientID}"),
                       ("instances_of_series", f"/dicom-web/studies/{images[0].studyUID}/series/"
                                               f"{images[0].seriesUID}/instances")):
        times = []
        for _ in range(20):
            started = time.perf_counter()
            request(connection, "GET", path, headers={"Accept": "application/dicom+json"})
            times.append(time.perf_counter() - started)
        found[name] = {"median_ms": round(statistics.median(times) * 1000, 2)}
        print(f"  QIDO-RS {name}: {found[name]['median_ms']} ms", flush=True)
    connection.close()
    return found


ALL_DATES = "19000101-29991231"


def dgateStartUp(server):
    """Seconds a dgate command that does nothing costs (median of 5): its
    process start-up and control connection, subtracted from each run."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        server.dgate("--display_status:")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def routed(label, images, direction, ways):
    """Time each way, ``(server, dgate commands, receiver)``, DICOM first,
    then DICOMweb: the commands run on the server (their start-up not
    counted), the receiver must then hold every image. The row of the two
    rates."""
    rates = []
    for server, commands, receiver in ways:
        overhead = dgateStartUp(server) * len(commands)
        started = time.perf_counter()
        for text in commands:
            result = server.dgate(text)
            if result.returncode != 0:
                raise RuntimeError(f"dgate {text}: {result.stdout[-500:]}{result.stderr[-500:]}")
        rates.append(round(len(images) / max(time.perf_counter() - started - overhead, 1e-3), 1))
        held = len(column(receiver.database, "DICOMImages", "SOPInstanceUID"))
        if held != len(images):
            raise RuntimeError(f"{label} {direction}: {receiver.ae} holds {held} of {len(images)} images")
    dicom, web = rates
    print(f"  {label:>8} x{len(images):5d} {direction}: DICOM {dicom:7.1f} img/s | DICOMweb {web:7.1f} img/s "
          f"({web / dicom:.0%})", flush=True)
    return {"corpus": label, "images": len(images), "dicom_images_per_s": dicom, "dicomweb_images_per_s": web,
            "ratio": round(web / dicom, 3)}


def routing(workdir, label, images):
    """Forward ``images`` from a pacs holding them to fresh ones by C-STORE
    and STOW-RS, then fetch them from it into fresh ones by C-MOVE and
    WADO-RS; ``(forward row, fetch row)``."""
    folder = tempfile.mkdtemp(dir=workdir)
    source = PacsServer(os.path.join(folder, "source"), ae="SOURCE")
    peers = {ae: PacsServer(os.path.join(folder, ae.lower()), ae=ae) for ae in ("CSTORED", "STOWED", "MOVED",
                                                                                "FETCHED")}
    source.addNode("CSTORED", peers["CSTORED"].port)
    source.addNode("MOVED", peers["MOVED"].port)
    source.setIni(section="DICOMwebServers", STOWWEB=f"http://127.0.0.1:{peers['STOWED'].webPort}/dicom-web")
    peers["MOVED"].addNode("SOURCE", source.port)
    peers["FETCHED"].setIni(section="DICOMwebServers", SOURCEWEB=f"http://127.0.0.1:{source.webPort}/dicom-web")
    servers = [source, *peers.values()]
    try:
        for server in servers:
            server.start()
        storeInto(source, [i.path for i in images])
        forward = routed(label, images, "forward", [
            (source, [f"--movestudies:(local),{ae},{ALL_DATES}"], peers[receiver])
            for ae, receiver in (("CSTORED", "CSTORED"), ("STOWWEB", "STOWED"))])
        studies = sorted({i.studyUID for i in images})
        fetch = routed(label, images, "fetch", [
            (peers[receiver], [f"--movestudy:{ae},{receiver},:{study}" for study in studies], peers[receiver])
            for ae, receiver in (("SOURCE", "MOVED"), ("SOURCEWEB", "FETCHED"))])
    finally:
        for server in servers:
            server.stop()
    return forward, fetch


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=2000, help="64x64 images")
    parser.add_argument("--large", type=int, default=500, help="512x512 images")
    parser.add_argument("--batch", type=int, default=50, help="objects per STOW-RS request")
    parser.add_argument("--out", default="bench/out/dicomweb.json")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pacs-bench-web-")
    dicom = PacsServer(os.path.join(workdir, "dicom"))
    web = PacsServer(os.path.join(workdir, "web"))
    try:
        small, large = generateCorpora(workdir, args.small, args.large)
        dicom.start()
        web.start()
        print("ingest: storescu (one association) / STOW-RS (one connection):", flush=True)
        ingests = [ingest(dicom, web, "64x64", small, args.batch), ingest(dicom, web, "512x512", large, args.batch)]
        print("retrieval: getscu (one C-GET) / WADO-RS (a study per request, as stored):", flush=True)
        retrievals = [retrieve(dicom, "64x64", small, workdir), retrieve(dicom, "512x512", large, workdir)]
        print("QIDO-RS:", flush=True)
        qido = searches(dicom, small)
        dicom.stop()
        web.stop()
        print("routing: forwards by C-STORE / STOW-RS (one forward action), fetches by C-MOVE / WADO-RS "
              "(a study per dgate command):", flush=True)
        forwards, fetches = zip(*(routing(workdir, label, images) for label, images in (("64x64", small),
                                                                                        ("512x512", large))))
    finally:
        dicom.stop()
        web.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    writeResults(args.out, ingest=ingests, retrieval=retrievals, qido=qido, forward=list(forwards),
                 fetch=list(fetches))


if __name__ == "__main__":
    main()
