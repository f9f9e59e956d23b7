"""``get`` from a DICOMweb server (``[DICOMwebServers]``, see
``pacscore.export.stow``): WADO-RS of the study, series or instance
(``transfer-syntax=*``: as the server stores it; a patient's studies found
first with QIDO-RS), the ``multipart/related`` answer written to a
temporary file as it arrives (in the I/O pool, the connection paused while
the disk falls behind), then each part stored as a STOW-RS part is
(import converters, IncomingCompression, on disk and in the index), the
server's name as calling AE; a get the archive started itself
(``preretrieve``) leaves the import and export converters out.  Objects that cannot be stored make the
action a ``StowError`` (the queue retries it; what was stored stays)."""

import json
import tempfile
from urllib.parse import quote

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.web.client import ResponseDone, readBody
from twisted.web.http import PotentialDataLoss

from pacscore.export.stow import DicomWebClient, StowError
from pacscore.web.dicomweb import multipart
from pacscore.web.dicomweb.store import DICOM, Outcome, storageOf, storePart

ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
MOST_BEHIND = 4 << 20  # bytes received but not yet on disk before the connection pauses
STUDY_INSTANCE_UID = "0020000D"


class _BodyFile(protocol.Protocol):
    """Writes a response body into ``file`` with one write in the I/O pool
    at a time (in order); ``done`` fires when it is all there."""

    def __init__(self, workers, file):
        self.workers = workers
        self.file = file
        self.waiting = []
        self.behind = 0
        self.writing = False
        self.paused = False
        self.ended = None
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.waiting.append(data)
        self.behind += len(data)
        if self.behind > MOST_BEHIND and not self.paused:
            self.paused = True
            self.transport.pauseProducing()
        self._write()

    def _write(self):
        if self.writing or not self.waiting or self.done.called:
            return
        data, self.waiting = b"".join(self.waiting), []
        self.writing = True
        self.workers.deferToWorker(self.file.write, data).addCallbacks(self._written, self._failed,
                                                                       callbackArgs=(len(data),))

    def _written(self, _, size):
        self.writing = False
        self.behind -= size
        if self.paused and self.behind <= MOST_BEHIND // 4:
            self.paused = False
            self.transport.resumeProducing()
        self._write()
        self._finish()

    def _failed(self, failure):
        self.writing = False
        if not self.done.called:
            self.transport.stopProducing()
            self.done.errback(failure)

    def connectionLost(self, reason):
        self.ended = reason
        self._finish()

    def _finish(self):
        if self.ended is None or self.writing or self.waiting or self.done.called:
            return
        if self.ended.check(ResponseDone, PotentialDataLoss):  # the closing boundary tells a cut body
            self.done.callback(None)
        else:
            self.done.errback(self.ended)


class DicomWebFetcher(DicomWebClient):
    """Fetches objects from DICOMweb servers into ``archive``."""

    log = Logger()

    def __init__(self, archive, timeout=300):
        super().__init__(archive.reactor, timeout)
        self.archive = archive

    async def fetch(self, server, level, target, converters=True):
        """Fetch the entity ``target`` (a queue Target) at ``level``;
        ``(stored, failed)`` counts. StowError when the server fails.
        ``converters``: whether the import and export converters see the
        objects (not for a get the archive started itself, see
        ``pacscore.dicom.ownretrieves``)."""
        if level == "PATIENT":
            studies = await self._studiesOf(server, target.patientID)
        else:
            studies = [target.studyInstanceUID]
        stored = failed = 0
        for study in studies:
            path = f"/studies/{quote(study)}"
            if level in ("SERIES", "IMAGE"):
                path += f"/series/{quote(target.seriesInstanceUID)}"
            if level == "IMAGE":
                path += f"/instances/{quote(target.sopInstanceUID)}"
            counts = await self._fetchAndStore(server, path, study, converters)
            stored, failed = stored + counts[0], failed + counts[1]
        return stored, failed

    async def _get(self, server, path, accept):
        url = server.url + path
        try:
            requested = self.agent.request(b"GET", url.encode("ascii"), self.headers(server, Accept=accept))
            response = await self.inTime(requested)
        except Exception as e:
            raise StowError(f"GET {url} from {server.name} failed: {e}") from e
        if response.code == 204 and accept == "application/dicom+json":
            return response, url
        if response.code != 200:
            answer = await readBody(response)
            raise StowError(f"{server.name} answered GET {url} with {response.code} "
                            f"{response.phrase.decode('latin-1')}: {answer[:200].decode('utf-8', 'replace')}")
        return response, url

    async def _studiesOf(self, server, patientID):
        """The Study Instance UIDs QIDO-RS finds for the patient."""
        response, url = await self._get(server, f"/studies?PatientID={quote(patientID)}&includefield=0020000D",
                                        "application/dicom+json")
        if response.code == 204:
            return []
        try:
            matches = json.loads(await readBody(response))
            return [match[STUDY_INSTANCE_UID]["Value"][0] for match in matches]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise StowError(f"{server.name}: the answer to {url} is not a DICOM JSON list of studies") from e

    async def _fetchAndStore(self, server, path, study, converters):
        response, url = await self._get(server, path, ACCEPT)
        contentType = multipart.mediaType((response.headers.getRawHeaders(b"content-type") or [b""])[0]
                                          .decode("latin-1"))
        boundary = contentType.get("boundary")
        if contentType.name != "multipart/related" or not boundary:
            raise StowError(f"{server.name} answered GET {url} with {contentType.name or 'no content type'}, "
                            "not multipart/related")
        workers = self.archive.workers
        body = await workers.deferToWorker(tempfile.TemporaryFile, prefix="pacs-wado-")
        try:
            receiver = _BodyFile(workers, body)
            response.deliverBody(receiver)
            try:
                await receiver.done
                parts = await workers.deferToWorker(multipart.splitParts, body, boundary)
            except Exception as e:
                raise StowError(f"the answer of {server.name} to GET {url} broke off: {e!r}") from e
            storage = storageOf(self.archive)
            outcome = Outcome(server.url, storage.log)
            for part in parts:
                await storePart(self.archive, storage, body, part, DICOM, study, outcome, callingAE=server.name[:16],
                                converters=converters)
            outcome.logUnlogged()
        finally:
            await workers.deferToWorker(body.close)
        self.log.info("fetched from {server} ({url}): {stored} object(s) stored, {failed} not", server=server.name,
                      url=url, stored=len(outcome.stored), failed=outcome.refused)
        return len(outcome.stored), outcome.refused
