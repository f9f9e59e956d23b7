"""C-STORE SCP (PS3.4 annex B): spool, store, answer with a status.

Like every service it answers ``handle(protocol, contextId, command,
dataset)``; it also provides the data set sink (a spool on the MAG device).
"""

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.logger import Logger

from pacscore.dicom import commands
from pacscore.dicom.commands import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH, OUT_OF_RESOURCES
from pacscore.dicom.routing import refuse
from pacscore.dicom.timing import timed
from pacscore.db.errors import DATABASE_FAILURES, databaseMessage
from pacscore.logfiles import userEvents
from pacscore.storage.devices import isDiskFull
from pacscore.storage.store import DatasetMismatch, Destroyed, IncomingObject, InvalidDataset, Rebuilding, Refused

SUCCESS = 0x0000


class StorageService:
    """C-STORE: spool the data set, store it, answer with the outcome.

    Success is sent only once the object is fsynced and committed to the
    index; ``storageFailedStatus`` is Conquest's StorageFailedErrorCode;
    objects are stored compressed as ``incomingCompression`` (Conquest's
    IncomingCompression) says, or the ``~xx`` of the called AE title.
    The sub-operations of a retrieve the archive started itself
    (``ownRetrieves``, an ``OwnRetrieves``: ``preretrieve``) are stored
    without the import and export converters; those of a virtual server's
    fetch with them, knowing the archive they came from (``fetchedFrom``),
    the fetch told of each one stored (``OwnRetrieves.storing``), and of
    each any other store brings (a modality's, STOW-RS's).
    """

    log = Logger()
    userLog = Logger(observer=userEvents)

    def __init__(self, objectStore, storageFailedStatus=0x0110, counters=None, incomingCompression="",
                 ownRetrieves=None):
        self.objectStore = objectStore
        self.storageFailedStatus = storageFailedStatus
        self.counters = counters if counters is not None else {}
        self.incomingCompression = incomingCompression
        self.ownRetrieves = ownRetrieves

    def _incoming(self, protocol, contextId, command):
        association, own = protocol.association, self.ownRetrieves
        return IncomingObject(
            sopClassUID=command.get(commands.AFFECTED_SOP_CLASS_UID, ""),
            sopInstanceUID=command.get(commands.AFFECTED_SOP_INSTANCE_UID, ""),
            transferSyntax=association.contexts[contextId][1],
            callingAE=association.callingAE,
            calledAE=association.calledAE,
            compression=association.compression or self.incomingCompression, session=protocol.session,
            converters=own is None or not own.brings(command),
            fetchedFrom=(None if own is None else own.fetchedFrom(command)) or "")

    def datasetSink(self, protocol, contextId, command):
        return self.objectStore.spool(self._incoming(protocol, contextId, command), protocol.transport)

    def handle(self, protocol, contextId, command, dataset):
        incoming = self._incoming(protocol, contextId, command)
        contextClass = protocol.association.contexts[contextId][0]
        if incoming.sopClassUID != contextClass:
            # PS3.7 9.1.1.1: the context's abstract syntax is the SOP class; else an object
            # refused at negotiation (dgatesop.lst) would come in on any other context
            if dataset is not None:
                dataset.discard()
            refuse(protocol, contextId, command, contextClass, f"a {incoming.sopClassUID} object on this context")
            return defer.succeed(None)
        stored = self.storeIncoming(incoming, dataset, "C-STORE-RQ without a data set", command)
        stored.addCallback(self._respond, protocol, contextId, command)
        return stored

    def storeIncoming(self, incoming, dataset, missing, command=None):
        """Store ``incoming`` from its spool ``dataset`` (None: there is
        none, ``missing`` says why), its C-STORE-RQ ``command`` (None:
        STOW-RS). Fires with ``(status, comment)``, a failure counted and
        logged.  The ``ownRetrieves`` hear of the store as it comes, not
        after its commit (``OwnRetrieves.storing``), and of its end."""
        ended = None if self.ownRetrieves is None else self.ownRetrieves.storing(command, incoming.sopInstanceUID)
        if dataset is None:
            stored = defer.fail(InvalidDataset(missing))
        else:
            stored = timed(self.objectStore.store(incoming, dataset), self.counters, "storeTime")
        if ended is not None:
            stored.addBoth(_told, ended)
        stored.addCallbacks(self._success, self._failure, errbackArgs=(incoming,))
        return stored.addCallback(self._counted, incoming)

    def _success(self, relative):
        self.counters["imagesReceived"] = self.counters.get("imagesReceived", 0) + 1
        return SUCCESS, None

    def _failure(self, failure, incoming):
        error = failure.value
        if isinstance(error, InvalidDataset):
            return CANNOT_UNDERSTAND, str(error)
        if isinstance(error, DatasetMismatch):
            return DATASET_DOES_NOT_MATCH, str(error)
        if isinstance(error, Destroyed):
            self.log.info("C-STORE of {uid} from {calling}: not stored ({why}), answered Success",
                          uid=incoming.sopInstanceUID, calling=incoming.callingAE, why=error)
            return SUCCESS, None
        if isinstance(error, Refused):
            return self.storageFailedStatus, str(error)
        if isinstance(error, Rebuilding):  # transient, as a full disk: the sender retries
            return OUT_OF_RESOURCES, str(error)
        if isDiskFull(error):
            return OUT_OF_RESOURCES, f"disk full: {databaseMessage(error)}"
        if not failure.check(*DATABASE_FAILURES):  # the index failing is logged by the store, in a line
            self.log.failure("storing {uid} failed", failure, uid=incoming.sopInstanceUID)
        return self.storageFailedStatus, f"storage failed: {error}"

    def _counted(self, outcome, incoming):
        status, comment = outcome
        if status != SUCCESS:
            self.counters["storeFailures"] = self.counters.get("storeFailures", 0) + 1
            self.log.warn("storing {uid} from {calling} refused with status 0x{status:04X}: {comment}",
                          uid=incoming.sopInstanceUID, calling=incoming.callingAE or "the web",
                          status=status, comment=comment)
        return outcome

    def _respond(self, outcome, protocol, contextId, command):
        status, comment = outcome
        if status == SUCCESS:
            self.userLog.info("{callingAE}: C-STORE", operation="C-STORE", callingAE=protocol.association.callingAE)
        extra = None if status == SUCCESS else {commands.ERROR_COMMENT: comment[:64]}
        protocol.sendMessage(contextId, commands.response(command, commands.C_STORE_RSP, status, extra))


def _told(result, ended):
    """``ended(stored)`` told whether the store ``result`` stored the object."""
    ended(not isinstance(result, Failure))
    return result
