"""Conquest's ``Prefetcher`` (dicom.ini): "If set, queries will start
prefetching all images of the patient into disk cache. A subsequent move
of 2 or more images will stop the prefetching."

A C-FIND that names one patient (a Patient ID without wildcards), or whose
matches all belong to one, starts reading that patient's files in the I/O
pool, ``BATCH`` at a time, so the viewer's retrieve that usually follows
finds them in the page cache (or a hierarchical store has brought them
back).  One patient is prefetched at a time: a query for another replaces
it; a C-MOVE or C-GET of 2 or more objects stops it, leaving the disks to
that retrieve.
"""

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.db.query import PATIENT_ID, QueryKey

BATCH = 16


def queriedPatient(keys, matches):
    """The one patient a C-FIND is about: its Patient ID key when that names
    one patient, else the Patient ID all ``matches`` ({tag: value}) share;
    None otherwise."""
    for key in keys:
        if key.tag == PATIENT_ID:
            value = str(key.value or "").strip()
            if value and not any(c in value for c in "*?\\"):
                return value
    found = {str(match.get(PATIENT_ID, "") or "").strip() for match in matches}
    return found.pop() if len(found) == 1 and "" not in found else None


class Prefetcher:
    """See the module docstring; ``reader`` is the archive's ObjectReader,
    ``workers`` its I/O pool."""

    log = Logger()

    def __init__(self, index, query, reader, workers):
        self.index = index
        self.query = query
        self.reader = reader
        self.workers = workers
        self.running = None  # (patient ID, token) of the prefetch under way

    def start(self, patientID):
        """Prefetch ``patientID`` (unless it is under way); a Deferred firing
        with how many objects were read, never failing."""
        if self.running is not None and self.running[0] == patientID:
            return defer.succeed(0)
        self.stop(f"a query for patient {patientID}")
        token = object()
        self.running = (patientID, token)
        d = defer.ensureDeferred(self._prefetch(patientID, token))
        d.addErrback(lambda failure: self.log.failure("prefetcher: patient {patient} failed", failure,
                                                      patient=patientID) or 0)
        return d

    def stop(self, why):
        """Stop the prefetch under way (before its next batch)."""
        if self.running is not None:
            self.log.info("prefetcher: patient {patient} stopped by {why}", patient=self.running[0], why=why)
            self.running = None

    async def _prefetch(self, patientID, token):
        instances = await self.index.runQuery(self.query.instances, "IMAGE", [QueryKey(PATIENT_ID, "LO", patientID)])
        read = 0
        for start in range(0, len(instances), BATCH):
            if self.running is None or self.running[1] is not token:
                return read
            read += await self.workers.deferToWorker(self.reader.readAll, instances[start:start + BATCH])
        if self.running is not None and self.running[1] is token:
            self.running = None
            self.log.info("prefetcher: {count} object(s) of patient {patient} read", count=read, patient=patientID)
        return read
