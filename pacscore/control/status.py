"""The server's status for ``--display_status``: gathered once, then shown as
text like Conquest's or as one JSON object for monitoring systems.

Counters come from ``archive.counters`` (every one of them, as kept by the
services; those of STARTING_COUNTERS at 0 until they first count, so that
``/metrics`` has every series from start-up and Prometheus sees the first
increment), queue depths from the export queue's tables and free space from
the MAG and mirror devices, both read in a worker thread.
"""

import json
import os
import time

from twisted.internet import defer

from pacscore.control.moves import SENT_COUNTER
from pacscore.export.queue import ACTIONS
from pacscore.storage.space import MEGABYTE

STARTING_COUNTERS = dict.fromkeys((
    "associationsActive", "associationsTotal", "imagesReceived", "storeFailures", "storeTime", "queries",
    "queryTime", "worklistQueries", "worklistQueryTime", "C-MOVEObjects", "C-GETObjects", SENT_COUNTER,
    "commitmentRequests", "mppsCreated", "mppsUpdated", "forwardsSent", "forwardsFailed",
    *(f"{action}Actions" for action in ACTIONS if action != "forward"),
    "hl7Connections", "hl7Messages", "hl7Applied", "hl7Errors"), 0)  # what the services count, before they do


def deviceSpace(devices):
    """``[{name, path, freeMB, totalMB}]`` of the MAG (and mirror) devices (blocking)."""
    space = []
    for device in devices:
        entry = {"name": device.name, "path": device.path, "freeMB": None, "totalMB": None}
        try:
            stat = os.statvfs(device.path)
        except OSError:
            pass
        else:
            entry.update(freeMB=stat.f_bavail * stat.f_frsize // MEGABYTE,
                         totalMB=stat.f_blocks * stat.f_frsize // MEGABYTE)
        space.append(entry)
    return space


async def gather(archive, reactor):
    """The status as a JSON-ready dict."""
    queues, devices = await defer.gatherResults([archive.workers.deferToWorker(archive.exportQueue.counts),
                                                 archive.workers.deferToWorker(deviceSpace, archive.devices + [
                                                     archive.mirrors.devices[name]
                                                     for name in sorted(archive.mirrors.mirrored)])],
                                                consumeErrors=True)
    counters = json.loads(json.dumps({**STARTING_COUNTERS, **archive.counters}, default=str))

    def count(name):
        return counters.get(name, 0)

    startTime = archive.startTime
    return {
        "server": {"aeTitle": archive.aeTitle, "port": archive.tcpPort,
                   "startTime": _isoTime(startTime) if startTime else None,
                   "uptime": round(reactor.seconds() - archive.startedAt, 3) if startTime else 0},
        "associations": {"active": count("associationsActive"), "total": count("associationsTotal")},
        "images": {"received": count("imagesReceived"),
                   "sent": count("C-MOVEObjects") + count("C-GETObjects") + count(SENT_COUNTER),
                   "forwarded": count("forwardsSent")},
        "time": {"query": round(count("queryTime"), 3), "worklistQuery": round(count("worklistQueryTime"), 3),
                 "store": round(count("storeTime"), 3)},
        "counters": dict(sorted(counters.items())),
        "queues": queues,
        "devices": devices,
    }


def _isoTime(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(seconds))


def asJSON(status):
    """One line of JSON."""
    return json.dumps(status, sort_keys=True)


def asText(status):
    """Human text, laid out after Conquest's display_status."""
    server, associations, images, spent = status["server"], status["associations"], status["images"], status["time"]
    queues = status["queues"]
    lines = [
        f"DICOM server '{server['aeTitle']}' (pacs, port {server['port']}) was started on {server['startTime']}",
        f"Run time (s) total {server['uptime']:.0f}, query {spent['query']:.3f}, "
        f"worklist query {spent['worklistQuery']:.3f}, save {spent['store']:.3f}",
        f"Associations: {associations['active']} active, {associations['total']} since start",
        f"Images received={images['received']}, sent={images['sent']}, forwarded={images['forwarded']}",
        f"Export jobs: {queues['jobs'].get('pending', 0)} pending, {queues['jobs'].get('failed', 0)} failed; "
        f"forwards: {queues['actions'].get('pending', 0)} pending, {queues['actions'].get('failed', 0)} failed",
    ]
    for destination, states in sorted(queues["destinations"].items(), key=lambda item: item[0] or ""):
        lines.append(f"  to {destination or '(local)'}: {states.get('pending', 0)} pending, "
                     f"{states.get('failed', 0)} failed")
    for device in status["devices"]:
        free = "unknown" if device["freeMB"] is None else f"{device['freeMB']} of {device['totalMB']} MByte free"
        lines.append(f"Space on {device['name']} ({device['path']}): {free}")
    lines.append("Counters:")
    lines += [f"  {name} = {value}" for name, value in status["counters"].items()]
    return "\n".join(lines)
