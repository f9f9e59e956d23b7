"""Forwarding to DICOMweb servers with STOW-RS (PS3.18 section 10.5).

dicom.ini's ``[DICOMwebServers]`` section names them, ``NAME = URL`` of the
server's DICOMweb root (``https://user:password@host/dicom-web``: the user
and password, if any, go as HTTP Basic credentials).  ``forward to NAME``
(export converters, ``dgate --move...`` to NAME) then POSTs the objects to
``URL/studies`` as ``multipart/related; type="application/dicom"``, a
request per ``BATCH_BYTES`` or so, each object as stored (NKI pixels
expanded; a large one read from its file as the body goes, see
``pacscore.export.partsbody``) or in the syntax of ``forward compressed as
XX``, falling back as a C-STORE forward does (``convertToFirst``: an object
the encoder cannot take goes as stored or uncompressed).  An answer
that is not 200, or that lists failed objects, is a ``ForwardError``, so
the export queue retries the action as it does a refused C-STORE; an
object whose stored file is damaged, or that cannot be converted to any
syntax (pixel data no codec decodes), is left out, as a C-STORE forward
leaves it out, and the rest goes; so is one deleted since it was located
(``reader.Deleted``), logged.  One that cannot be read here otherwise is
told to the caller, which fails the action once the others went (not the
server's failure), or leaves it out when it is the spool file of a changed
copy that is gone (as a C-STORE forward does)."""

import base64
import json
from typing import NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from pacscore.codecs.compression import AS_STORED_CODE
from pacscore.codecs.syntaxes import qualityOf
from pacscore.codecs.transcode import TranscodeError
from pacscore.config.errors import ConfigError
from pacscore.dicom.datasets import IdentifierError
from pacscore.dicom.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from pacscore.dicom.retrieve import choices, convertToFirst
from pacscore.dicom.storeddata import closeIfStored, readForPeer
from pacscore.export.partsbody import PartsBody
from pacscore.export.spool import isSpooled
from pacscore.hostport import bracketed, hostPort
from pacscore.storage.attributes import DatasetError
from pacscore.storage.part10 import encodeFileMeta
from pacscore.storage.reader import Deleted
from pacscore.web.dicomweb import multipart

SECTION = "DICOMwebServers"
BATCH_BYTES = 16 << 20
FAILED_SOP_SEQUENCE = "00081198"
FAILURE_REASON = "00081197"
REFERENCED_SOP_INSTANCE_UID = "00081155"


class DicomWebServer(NamedTuple):
    """A STOW-RS destination: its name, root URL (no credentials) and
    Authorization header value (or None)."""

    name: str
    url: str
    authorization: str | None

    @classmethod
    def fromURL(cls, name, text):
        """ValueError for anything but an http(s) URL with a host."""
        parts = urlsplit(text.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{text!r} is not an http:// or https:// URL")
        authorization = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("utf-8")
            authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        host = bracketed(parts.hostname) if parts.port is None else hostPort(parts.hostname, parts.port)
        return cls(name, urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", "")), authorization)


def dicomWebServers(configuration):
    """``{NAME (upper case): DicomWebServer}`` of the ``[DICOMwebServers]``
    section (of lines with the same NAME, case ignored, the first, as
    ``DicomIni.get`` reads them); ConfigError naming the line of a bad URL."""
    servers = {}
    for line, name, url in configuration.ini.numberedItems(SECTION):
        try:
            servers.setdefault(name.strip().upper(), DicomWebServer.fromURL(name.strip(), url))
        except ValueError as e:
            raise ConfigError(configuration.iniPath, line, f"[{SECTION}] {name}: {e}") from e
    return servers


class StowError(Exception):
    """A STOW-RS request that did not store everything; says why."""


class DicomWebClient:
    """HTTP to DICOMweb servers through one pool of persistent connections
    (``close()`` when done), each request answered within ``timeout`` s
    (None: no limit)."""

    def __init__(self, reactor, timeout=300):
        self.reactor = reactor
        self.timeout = timeout
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.agent = Agent(reactor, connectTimeout=30, pool=self.pool)

    def headers(self, server, **fields):
        """Headers (``fields``: name with ``_`` for ``-``: value) with the server's Authorization."""
        headers = Headers({name.replace("_", "-"): [value] for name, value in fields.items()})
        headers.addRawHeader("User-Agent", "pacs")
        if server.authorization:
            headers.addRawHeader("Authorization", server.authorization)
        return headers

    def inTime(self, deferred):
        """``deferred``, cancelled after ``timeout`` s (None: never)."""
        return deferred if self.timeout is None else deferred.addTimeout(self.timeout, self.reactor)

    def close(self):
        """Deferred: the idle connections are closed."""
        return self.pool.closeCachedConnections()


class StowSender(DicomWebClient):
    """POSTs stored objects (read by ``reader``, an ObjectReader) to
    DICOMweb servers: reads and conversions in ``workers``."""

    log = Logger()

    def __init__(self, reactor, reader, workers, timeout=300, lossyQuality=None):
        super().__init__(reactor, timeout)
        self.reader = reader
        self.workers = workers
        self.lossyQuality = lossyQuality

    async def send(self, server, located, onLeftOut, onUnreadable, compression="", onSent=None, check=None):
        """STOW-RS the StoredObjects ``located`` to ``server``; how many were
        stored. ``onLeftOut(stored, reason)`` for one whose stored file is
        damaged (``DatasetError``) or cannot be converted to any syntax
        (``TranscodeError``: pixel data no codec decodes; ``IdentifierError``),
        which a retry
        would not mend: left out, the others still go, as a C-STORE forward
        does; ``onUnreadable(stored, error)`` for one that cannot be read here
        otherwise (the ``OSError``: an I/O error, its file gone while the
        index still names it, the spool file of a changed copy gone), the
        others still going too;
        ``onSent(count)`` after each request; ``check()`` before each object
        (what it raises ends the sending)."""
        code = compression or AS_STORED_CODE
        batch, size, sent = [], 0, 0
        try:
            for stored in located:
                if check is not None:
                    check()
                try:
                    meta, data = await self._part(server, stored, code)
                except DatasetError as e:
                    onLeftOut(stored, f"{stored.sopInstanceUID} cannot be read: {e}")
                    continue
                except (TranscodeError, IdentifierError) as e:
                    onLeftOut(stored, f"{stored.sopInstanceUID} cannot be sent in {code} "
                                      f"nor a syntax it falls back to: {e}")
                    continue
                except Deleted:
                    self.log.warn("STOW-RS to {server}: {uid} was deleted since its forward was looked up: skipped",
                                  server=server.name, uid=stored.sopInstanceUID)
                    continue
                except OSError as e:
                    onUnreadable(stored, e)
                    continue
                except ValueError as e:
                    raise StowError(f"{stored.sopInstanceUID} cannot be sent in {code}: {e}") from e
                batch.append((meta, data))
                size += len(meta) + len(data)
                if size >= BATCH_BYTES:
                    sent += await self._post(server, batch)
                    batch, size = [], 0
                    if onSent is not None:
                        onSent(sent)
            if batch:
                sent += await self._post(server, batch)
                if onSent is not None:
                    onSent(sent)
        finally:
            for _, data in batch:
                closeIfStored(data)
        return sent

    async def _part(self, server, stored, code):
        """``(file meta, data set)`` of ``stored`` (a StoredObject) in the
        syntax of ``code``, else in the next one it can be converted to,
        uncompressed at last, as a C-STORE forward falls back (an image
        the encoder cannot take, logged); a large object sent as stored is
        left in its file (a ``StoredData``)."""
        stored, data = await self.workers.deferToWorker(readForPeer, self.reader, stored, code,
                                                        self.workers.deferToWorker,
                                                        follow=not isSpooled(stored.path))
        syntax, data, refusals = await convertToFirst(stored, data, choices(stored, None, code), self.workers,
                                                      qualityOf(code, self.lossyQuality))
        for refused, error in refusals:
            self.log.info("STOW-RS to {server}: {uid} cannot be converted to {refused} ({error}); sent as {syntax}",
                          server=server.name, uid=stored.sopInstanceUID, refused=refused, error=error, syntax=syntax)
        return encodeFileMeta(stored.sopClassUID, stored.sopInstanceUID, syntax, IMPLEMENTATION_CLASS_UID,
                              IMPLEMENTATION_VERSION), data

    async def _post(self, server, batch):
        """POST ``batch``, ``[(file meta, data set)]``; how many were stored."""
        boundary = multipart.newBoundary()
        body = PartsBody(boundary, batch)
        headers = self.headers(server, Content_Type=multipart.multipartType(boundary, "application/dicom"),
                               Accept="application/dicom+json")
        url = f"{server.url}/studies"
        try:
            requested = self.agent.request(b"POST", url.encode("ascii"), headers, body)
            response = await self.inTime(requested)
            answer = await self.inTime(readBody(response))
        except defer.TimeoutError as e:
            raise StowError(f"{server.name} ({url}) did not answer within {self.timeout} s") from e
        except Exception as e:
            raise StowError(f"STOW-RS to {server.name} ({url}) failed: {e}") from e
        finally:
            body.close()
        failed = _failures(answer)
        if response.code == 200 or (response.code == 202 and not failed):
            self.log.info("STOW-RS to {server}: {count} object(s) stored", server=server.name, count=len(batch))
            return len(batch)
        reason = "; ".join(failed[:5]) if failed else answer[:200].decode("utf-8", "replace").strip()
        raise StowError(f"{server.name} answered STOW-RS of {len(batch)} object(s) with {response.code} "
                        f"{response.phrase.decode('latin-1')}" + (f": {reason}" if reason else ""))


def _failures(answer):
    """``["UID: reason 0xXXXX"]`` of the Failed SOP Sequence of a STOW-RS answer (DICOM JSON)."""
    try:
        dataset = json.loads(answer)
    except ValueError:
        return []
    if isinstance(dataset, list) and dataset:
        dataset = dataset[0]
    if not isinstance(dataset, dict):
        return []
    failures = []
    for item in dataset.get(FAILED_SOP_SEQUENCE, {}).get("Value", []):
        uid = (item.get(REFERENCED_SOP_INSTANCE_UID, {}).get("Value") or ["?"])[0]
        reason = (item.get(FAILURE_REASON, {}).get("Value") or [None])[0]
        failures.append(f"{uid}: " + (f"reason 0x{reason:04X}" if isinstance(reason, int) else "failed"))
    return failures
