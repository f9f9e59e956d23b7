"""Import converters on an incoming object, before it is stored (manual 7.2).

``ImportConverters.apply`` runs, in the I/O thread that stores the object,
every ImportConverterN line whose Modality, StationName, CalledAE and
CallingAE filters match, in order, on one decoded data set (the lines
share the variables %x %y %z).  ``stop`` ends only its own line; ``destroy``
and ``reject`` end them all (the object is then not stored: Success or a
failure status for the sender).  What the lines changed is re-encoded in
the object's transfer syntax, or transcoded when a ``compression`` command
asked for another one; ``storage MAGn`` picks the device.
"""

from typing import NamedTuple

from twisted.logger import Logger

from pacscore.codecs.syntaxes import proposals
from pacscore.codecs.transcode import TranscodeError, transcode
from pacscore.converters.context import ConverterContext, Outcome
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.storage.store import MODALITY, STATION_NAME, Destroyed, Refused


class ImportDecision(NamedTuple):
    """What the lines changed: new data set bytes (or None), the transfer
    syntax they are in (or None: unchanged), the preferred device (or None)."""

    data: bytes | None
    transferSyntax: str | None
    device: str | None


class ImportConverters:
    """The import rules of a configuration (``ConverterRules.importRules``)."""

    log = Logger()

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
        variables = {"x": "", "y": "", "z": ""}
        changed, device, compression = False, None, None
        for rule in rules:
            context = ConverterContext("import", dataset, incoming.callingAE, incoming.calledAE,
                                       services=self.services, converterName=rule.key, variables=variables)
            outcome = rule.script.run(context)
            changed = changed or context.changed
            device = context.storageDevice or device
            compression = context.compression or compression
            if outcome is Outcome.DESTROY:
                raise Destroyed(f"destroyed by {rule.key}")
            if outcome is Outcome.REJECT:
                raise Refused(context.rejectReason or f"rejected by {rule.key}")
        data = encodeDataset(dataset, transferSyntax) if changed else None
        target = self._target(transferSyntax, compression)
        if target != transferSyntax:
            try:
                data = transcode(data if data is not None else encodeDataset(dataset, transferSyntax),
                                 transferSyntax, target)
            except TranscodeError as e:
                self.log.warn("{uid}: compression {code} not applied, stored as received: {error}",
                              uid=incoming.sopInstanceUID, code=compression, error=e)
                target = transferSyntax
        if data is None and device is None:
            return None
        return ImportDecision(data, target if target != transferSyntax else None, device)

    @staticmethod
    def _target(transferSyntax, compression):
        """The syntax a ``compression`` code asks for (the first the codecs
        can produce, as for sending), or ``transferSyntax`` itself."""
        if not compression:
            return transferSyntax
        return proposals(transferSyntax, compression)[0]
