"""Import converters on an incoming object, before it is stored (manual 7.2).

``ImportConverters.apply`` runs, in the I/O thread that stores the object,
every ImportConverterN line whose Modality, StationName, CalledAE and
CallingAE filters match, in order, on one decoded data set (the lines
share the variables %x %y %z).  ``stop`` ends only its own line; ``destroy``
and ``reject`` end them all (the object is then not stored: Success or a
failure status for the sender).  The data set keeps its transfer syntax
in its ``file_meta`` (so ``save to`` and ``process with`` write the
object as it is encoded); what the lines changed is re-encoded in that
syntax, which is the one the object read back from ``process with`` came
in (its program may compress or decompress it); a ``compression`` command's code goes back
to the store, which compresses the object accordingly (instead of by
IncomingCompression); ``storage MAGn`` picks the device.  The delayed
actions the lines ask for (``forward ... to``, ``get``, ``prefetch`` ...)
are kept in an ``ActionBuffer`` and go to the export queue in the stored
object's index transaction: a forward is never looked for before its
object is indexed, nor queued for an object that is not stored.
"""

import copy

from typing import NamedTuple

from pydicom.dataset import FileMetaDataset

from pacscore.converters.context import ConverterContext, Outcome
from pacscore.converters.saving import transferSyntaxOf
from pacscore.export.queue import ActionBuffer
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.storage.store import MODALITY, STATION_NAME, Destroyed, Refused


class ImportDecision(NamedTuple):
    """What the lines changed: new data set bytes (or None) in
    ``transferSyntax``, the compression code asked for (or None), the
    preferred device (or None); the ``PacsForwards`` rows they queued."""

    data: bytes | None
    transferSyntax: str
    compression: str | None
    device: str | None
    actions: tuple = ()


class ImportConverters:
    """The import rules of a configuration (``ConverterRules.importRules``)."""

    def __init__(self, rules, services):
        self.rules = rules
        self.services = services

    def matching(self, incoming, attrs):
        return [rule for rule in self.rules
                if rule.matches(attrs.get(MODALITY, ""), attrs.get(STATION_NAME, ""),
                                incoming.calledAE, incoming.callingAE)]

    def apply(self, incoming, attrs, data, transferSyntax):
        """In a worker thread: an ``ImportDecision``, or None when nothing
        changed. Raises Destroyed or Refused."""
        rules = self.matching(incoming, attrs)
        if not rules:
            return None
        dataset = decodeDataset(data, transferSyntax)
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = transferSyntax
        variables = {"x": "", "y": "", "z": ""}
        changed, device, compression = False, None, None
        services, buffer = self.services, None
        if services.exportQueue is not None:
            buffer = ActionBuffer(services.exportQueue)
            services = copy.copy(services)
            services.exportQueue = buffer
        for rule in rules:
            context = ConverterContext("import", dataset, incoming.callingAE, incoming.calledAE,
                                       services=services, converterName=rule.key, variables=variables,
                                       session=incoming.session, fetchedFrom=incoming.fetchedFrom)
            outcome = rule.script.run(context)
            changed = changed or context.changed
            device = context.storageDevice or device
            compression = context.compression or compression
            if outcome is Outcome.DESTROY:
                raise Destroyed(f"destroyed by {rule.key}")
            if outcome is Outcome.REJECT:
                raise Refused(context.rejectReason or f"rejected by {rule.key}")
        transferSyntax = transferSyntaxOf(dataset)
        data = encodeDataset(dataset, transferSyntax) if changed else None
        actions = tuple(buffer.actions) if buffer is not None else ()
        if data is None and compression is None and device is None and not actions:
            return None
        return ImportDecision(data, transferSyntax, compression, device, actions)
