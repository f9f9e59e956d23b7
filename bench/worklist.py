"""Worklist benchmark: HL7 orders per second over MLLP, and modality
worklist C-FIND latency with 10,000 items.

    python bench/worklist.py [--orders 10000] [--connections 4] [--out bench/out/worklist.json]

MLLP: ``--orders`` ORM^O01 new orders (one per accession number, 8 stations,
4 modalities, dates over 30 days) sent with the hl7 package's MLLPClient,
each waiting for its ACK as a RIS does: once over one connection, once over
``--connections`` in parallel.  Every ACK must be AA.  Reference: the same
client against a do-nothing MLLP responder (a subprocess answering every
message with a fixed ACK), so the ratio is the share of the bare round trip
rate that parsing, mapping and committing each order leaves.

C-FIND: then, on the worklist those orders built, one association from our
own client, each query 20 times, the median time from request to final
response.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.report import findMedian, writeResults  # noqa: E402
import hl7.client  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from pacscore.dicom.client import associate  # noqa: E402
from pacscore.dicom.worklist import MODALITY_WORKLIST_FIND  # noqa: E402
from pacscore.testing.orders import orderMessage  # noqa: E402
from tests.interop.server import PacsServer, freePort  # noqa: E402

SURNAMES = ["SMITH", "JONES", "DOE", "MUELLER", "GARCIA", "MARTIN", "ROSSI", "NOVAK", "KOWALSKI", "DUBOIS"]
MODALITIES = ["CT", "MR", "US", "CR"]
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"

# A do-nothing MLLP peer: answers every framed message with one fixed ACK.
RESPONDER = r"""
import socket, sys, threading
ACK = b"\x0bMSH|^~\\&|REF|REF|RIS|H|20260101||ACK^O01^ACK|1|P|2.3.1\rMSA|AA|1\r\x1c\r"
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = b""
    while data := conn.recv(65536):
        buffer += data
        while b"\x1c\r" in buffer:
            _, buffer = buffer.split(b"\x1c\r", 1)
            conn.sendall(ACK)
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def orders(count):
    """``count`` new orders: 8 stations, 4 modalities, 30 days, 10 surnames."""
    for n in range(count):
        yield orderMessage(
            f"B{n}", f"BA{n:08d}", f"BP{n % 5000:06d}", f"{SURNAMES[n % 10]}^PATIENT{n}",
            modality=MODALITIES[n % 4], start=f"202612{1 + n % 30:02d}{8 + n % 10:02d}{(n * 7) % 60:02d}",
            stationAE=f"STATION{n % 8}", stationName=f"ROOM{n % 8}")


def sendOrders(port, messages, connections):
    """Send ``messages`` over ``connections`` parallel connections, each
    waiting for every ACK; the elapsed seconds and the ACK codes."""
    shares = [messages[i::connections] for i in range(connections)]
    codes = [[] for _ in shares]

    def send(share, into):
        with hl7.client.MLLPClient("127.0.0.1", port) as client:
            for message in share:
                reply = client.send_message(message)
                into.append(reply.split(b"MSA|", 1)[1][:2].decode() if b"MSA|" in reply else "??")

    threads = [threading.Thread(target=send, args=(share, into)) for share, into in zip(shares, codes)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, [code for into in codes for code in into]


def identifier(sequence=None, **keys):
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    item = Dataset()
    for keyword, value in (sequence or {}).items():
        setattr(item, keyword, value)
    ds.ScheduledProcedureStepSequence = [item]
    return ds


RETURNED = {"Modality": "", "ScheduledStationAETitle": "", "ScheduledStationName": "", "ScheduledProcedureStepStartDate": "",
            "ScheduledProcedureStepStartTime": "", "ScheduledProcedureStepID": ""}


async def findLatencies(reactor, port, ae):
    association = await associate(reactor, "127.0.0.1", port, "BENCH", ae,
                                  [(MODALITY_WORKLIST_FIND, [EXPLICIT, IMPLICIT])])
    base = {"PatientName": "", "PatientID": "", "AccessionNumber": "", "StudyInstanceUID": ""}
    queries = {
        "one accession number": identifier(RETURNED, **dict(base, AccessionNumber="BA00004242")),
        "station name + one day": identifier(dict(RETURNED, ScheduledStationName="ROOM3",
                                                  ScheduledProcedureStepStartDate="20261212"), **base),
        "modality + 3-day range": identifier(dict(RETURNED, Modality="MR",
                                                  ScheduledProcedureStepStartDate="20261210-20261212"), **base),
        "patient name wildcard": identifier(RETURNED, **dict(base, PatientName="KOWALSKI^PATIENT12*")),
        "whole worklist": identifier(RETURNED, **base),
    }
    results = {}
    for name, query in queries.items():
        results[name] = await findMedian(association, MODALITY_WORKLIST_FIND, query,
                                         rounds=5 if name == "whole worklist" else 20)
        print(f"  C-FIND {name:24s} median {results[name]['median_ms']:8.2f} ms, {results[name]['matches']} matches",
              file=sys.stderr, flush=True)
    await association.release()
    return results


def findOnly(port, ae):
    """Child process with its own reactor: results as JSON on stdout."""
    async def measure(reactor):
        print(json.dumps(await findLatencies(reactor, int(port), ae)))
    task.react(lambda reactor: defer.ensureDeferred(measure(reactor)))


def rate(label, port, messages, connections):
    seconds, codes = sendOrders(port, messages, connections)
    if codes.count("AA") != len(messages):
        raise RuntimeError(f"{label}: {len(messages) - codes.count('AA')} orders not acknowledged with AA")
    return len(messages) / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--out", default="bench/out/worklist.json")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="pacs-bench-wl-")
    server = PacsServer(os.path.join(workdir, "pacs"))
    referencePort = freePort()
    reference = subprocess.Popen([sys.executable, "-c", RESPONDER, str(referencePort)], stdout=subprocess.PIPE)
    messages = list(orders(args.orders))
    half = len(messages) // 2
    mllp = []
    try:
        reference.stdout.readline()
        server.start()
        for label, connections, batch in (("1 connection", 1, messages[:half]),
                                          (f"{args.connections} connections", args.connections, messages[half:])):
            pacsRate = rate(label, server.hl7Port, batch, connections)
            referenceRate = rate(label, referencePort, batch, connections)
            mllp.append({"connections": connections, "orders": len(batch), "pacs_per_s": round(pacsRate),
                         "reference_per_s": round(referenceRate), "ratio": round(pacsRate / referenceRate, 3)})
            print(f"MLLP {label:14s}: {pacsRate:7.0f} orders/s, do-nothing responder {referenceRate:7.0f}/s, "
                  f"ratio {pacsRate / referenceRate:.0%}", flush=True)
        print(f"worklist C-FIND with {len(messages)} items:", flush=True)
        output = subprocess.run([sys.executable, __file__, "--find-only", str(server.port), server.ae],
                                stdout=subprocess.PIPE, text=True, check=True)
        finds = json.loads(output.stdout)
    finally:
        reference.kill()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    writeResults(args.out, mllp=mllp, worklist_items=len(messages), find=finds)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--find-only":
        findOnly(*sys.argv[2:4])
    else:
        main()
