"""``/metrics``: the server's status (``pacscore.control.status``, what
``dgate --display_status`` shows) in Prometheus' text format (0.0.4), for
Prometheus, Grafana Agent, Telegraf and the like to scrape.

Every counter of the services is a ``pacs_..._total`` counter (names in
snake case: ``imagesReceived`` is ``pacs_images_received_total``, times in
seconds ``pacs_query_seconds_total``), the active associations and queue
depths are gauges (``pacs_export_jobs{state=...}``,
``pacs_forwards{destination=...,state=...}``), and each MAG and mirror
device's free and total bytes ``pacs_device_free_bytes{device=...}``.
Behind the ``WebUsers`` login like every page."""

import re

from pacscore.control import status
from pacscore.storage.space import MEGABYTE
from pacscore.web.answering import AnsweringResource
from pacscore.web.answers import Answer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GAUGES = frozenset(("associationsActive",))
QUEUE_COUNTERS = frozenset(("exportJobsPending", "exportJobsFailed", "forwardQueuePending", "forwardQueueFailed",
                            "forwardQueueByDestination"))  # shown from the queue tables instead
_WORD = re.compile(r"[A-Z]+(?![a-z])[0-9]*|[A-Z]?[a-z]+[0-9]*|[0-9]+")


def metricName(counter):
    """``pacs_`` and ``counter`` in snake case (``C-MOVEObjects``: ``pacs_c_move_objects``)."""
    return "pacs_" + "_".join(word.lower() for word in _WORD.findall(counter))


def _labelValue(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels):
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_labelValue(value)}"' for name, value in labels.items()) + "}"


class Exposition:
    """The lines of a text exposition, each family's HELP and TYPE once."""

    def __init__(self):
        self.lines = []
        self.declared = set()

    def add(self, name, kind, help, value, **labels):
        if name not in self.declared:
            self.declared.add(name)
            self.lines += [f"# HELP {name} {help}", f"# TYPE {name} {kind}"]
        self.lines.append(f"{name}{_labels(**labels)} {value}")

    def text(self):
        return "\n".join(self.lines) + "\n"


def exposition(current):
    """The text exposition of a ``status.gather`` dict."""
    out = Exposition()
    server = current["server"]
    out.add("pacs_up", "gauge", "1 while the server answers", 1, ae=server["aeTitle"])
    out.add("pacs_uptime_seconds", "gauge", "seconds since the server started", float(server["uptime"]))
    for name, value in current["counters"].items():
        if name in QUEUE_COUNTERS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        metric = metricName(name)
        if name in GAUGES:
            out.add(metric, "gauge", f"{name} (now)", value)
        elif name.endswith("Time"):
            out.add(metricName(name[:-4]) + "_seconds_total", "counter", f"{name} (seconds spent)", float(value))
        else:
            out.add(metric if metric.endswith("_total") else metric + "_total", "counter", f"{name} since start",
                    value)
    queues = current["queues"]
    for state, count in sorted(queues["jobs"].items()):
        out.add("pacs_export_jobs", "gauge", "export converter jobs in the queue", count, state=state)
    for destination, states in sorted(queues["destinations"].items()):
        for state, count in sorted(states.items()):
            out.add("pacs_forwards", "gauge", "forward, get and delayed actions in the queue", count,
                    destination=destination, state=state)
    for device in current["devices"]:
        if device["freeMB"] is None:
            continue
        out.add("pacs_device_free_bytes", "gauge", "free space of a MAG or mirror device", device["freeMB"] * MEGABYTE,
                device=device["name"])
        out.add("pacs_device_size_bytes", "gauge", "size of a MAG or mirror device", device["totalMB"] * MEGABYTE,
                device=device["name"])
    return out.text()


class MetricsResource(AnsweringResource):
    """``/metrics`` of ``archive``."""

    def __init__(self, archive):
        super().__init__()
        self.archive = archive

    async def answer(self, request):
        current = await status.gather(self.archive, self.archive.reactor)
        return Answer(exposition(current).encode("utf-8"), CONTENT_TYPE, (("Cache-Control", "no-cache"),))
