"""The DICOM requests Lua converters send to AEs of acrnema.map, as
Conquest's ``dicomquery(ae, level, query)`` and ``dicommove(source,
destination, query[, patientroot])``: one C-FIND whose matches come back as
Datasets, one C-MOVE waited for to its end.  Called in the reactor, each on
an association of its own (``servercommands`` makes them callable from a
converter's worker thread, limited in time).

The information model is Patient Root at PATIENT level (or for a move asked
with ``patientroot``), else Study Root, as the control port's finders ask.
"""

import copy

from pacscore.codecs.syntaxes import UNCOMPRESSED
from pacscore.dicom import commands
from pacscore.dicom.client import NodeUnreachable, associateNode
from pacscore.dicom.models import PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, STUDY_ROOT_FIND, STUDY_ROOT_MOVE

SUCCESS = 0x0000


class DicomRequestError(Exception):
    """A request that could not be sent or did not succeed; says why."""


class DicomRequests:
    """The requests, sent as ``aeTitle`` with the archive's settings."""

    def __init__(self, archive):
        self.archive = archive

    async def _associate(self, ae, sopClass):
        archive = self.archive
        node = archive.configuration.acrNemaMap.lookup(str(ae).strip())
        if node is None:
            raise DicomRequestError(f"{ae!r} is not in acrnema.map")
        try:
            return await associateNode(archive.reactor, node, archive.aeTitle, [(sopClass, list(UNCOMPRESSED))],
                                       dimseTimeout=archive.idleTimeout,
                                       titleStyle=archive.titleStyle)
        except NodeUnreachable as e:
            raise DicomRequestError(str(e)) from None

    async def find(self, ae, level, identifier):
        """The matches (Datasets) of a C-FIND on ``ae`` at ``level`` with
        the keys of ``identifier`` (a Dataset, not changed)."""
        level = str(level).strip().upper()
        identifier = copy.deepcopy(identifier)
        identifier.QueryRetrieveLevel = level
        model = PATIENT_ROOT_FIND if level == "PATIENT" else STUDY_ROOT_FIND
        protocol = await self._associate(ae, model)
        try:
            status, matches = await protocol.findMatches(model, identifier, self.archive.workers.deferToWorker)
        except Exception as e:  # whatever ended the association or spoilt a match
            raise DicomRequestError(f"C-FIND on {ae} failed: {e}") from e
        finally:
            await protocol.release()
        if status != SUCCESS:
            raise DicomRequestError(f"C-FIND on {ae} ended with status 0x{status:04X}")
        return matches

    async def move(self, source, destination, identifier, patientRoot=False):
        """A C-MOVE on ``source`` of what ``identifier`` (with its
        QueryRetrieveLevel) names to ``destination``; fires at its end."""
        if not str(identifier.get("QueryRetrieveLevel", "")).strip():
            raise DicomRequestError("the query object of a move needs a QueryRetrieveLevel")
        model = PATIENT_ROOT_MOVE if patientRoot else STUDY_ROOT_MOVE
        protocol = await self._associate(source, model)
        try:
            command, _ = await protocol.move(model, identifier, str(destination).strip())
        except Exception as e:
            raise DicomRequestError(f"C-MOVE on {source} failed: {e}") from e
        finally:
            await protocol.release()
        status = command.get(commands.STATUS)
        if status != SUCCESS:
            raise DicomRequestError(f"C-MOVE on {source} to {destination} ended with status 0x{status:04X}")
