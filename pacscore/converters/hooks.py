"""The query and retrieve converters (manual 7.2): converter lines run on
the data sets of queries and retrieves instead of incoming images.

- ``QueryConverter0`` / ``WorkListQueryConverter0`` / ``RetrieveConverter0``:
  on the identifier of a C-FIND (query/retrieve models), a worklist C-FIND,
  a C-MOVE or C-GET, before it is used; what they change is what is
  searched.  ``reject`` refuses the request (0xC000), ``destroy`` answers
  it with no match and no object.
- ``QueryResultConverter0`` / ``ModalityWorkListQueryResultConverter0``: on
  each answer before it is sent; ``destroy`` or ``reject`` leave the answer
  out.
- ``RetrieveResultConverter0``: on each object a C-MOVE or C-GET sends.
  The line runs on the object's attributes (decoded up to Pixel Data, so a
  line that only looks or logs costs no pixel decoding); the elements it
  set or deleted are then applied to the whole object.  ``destroy`` or
  ``reject`` leave the object out (a failed sub-operation).
- ``CompressionConverter0`` ... ``9``: Conquest's compression codes
  ``s0`` ... ``s9`` ("run CompressionConverterN"), on an object stored,
  sent or forwarded with that code, as ``RetrieveResultConverter0`` runs
  (``pacscore.converters.compressing``).

Every hook runs in a worker or reader thread, like every converter line;
the hooks of a DICOM association run with its ``session``, so their Lua
shares the association's Lua state (the functions its ``[lua] association``
script defined), as in Conquest.
"""

from pacscore.converters.context import ConverterContext, Outcome
from pacscore.converters.elements import applyAttributes
from pacscore.dicom.datasets import decodeDataset, decodePeerDataset, encodeDataset

HOOK_KINDS = {
    "QueryConverter0": "query",
    "QueryResultConverter0": "queryresult",
    "WorkListQueryConverter0": "worklistquery",
    "ModalityWorkListQueryResultConverter0": "worklistresult",
    "RetrieveConverter0": "retrieve",
    "RetrieveResultConverter0": "retrieveresult",
    **{f"CompressionConverter{n}": "compression" for n in range(10)},
}
LEFT_OUT = (Outcome.DESTROY, Outcome.REJECT)


class DatasetHook:
    """One special converter line and the services its commands use."""

    def __init__(self, script, kind, services):
        self.script = script
        self.kind = kind
        self.services = services

    def run(self, dataset, callingAE, calledAE, moveDestination=None, session=None):
        """Run the line on ``dataset`` (changed in place): ``(outcome, changed)``;
        ``moveDestination``: where a retrieve sends, ``%s`` in the line;
        ``session``: that of the association asking, or None."""
        context = ConverterContext(self.kind, dataset, callingAE, calledAE, services=self.services,
                                   converterName=self.script.key, moveDestination=moveDestination, session=session)
        return self.script.run(context), context.changed

    def applyToBytes(self, data, transferSyntax, callingAE, calledAE, moveDestination=None, session=None):
        """For identifiers: ``(outcome, data)``, the data re-encoded when the
        line changed it. Raises IdentifierError for undecodable data."""
        dataset = decodePeerDataset(data, transferSyntax)
        outcome, changed = self.run(dataset, callingAE, calledAE, moveDestination, session)
        return outcome, encodeDataset(dataset, transferSyntax) if changed else data

    def applyToObject(self, data, transferSyntax, callingAE, calledAE, moveDestination=None, session=None):
        """For stored objects: ``(outcome, data)`` (see the module docstring)."""
        header = decodeDataset(data, transferSyntax, stopBeforePixels=True)
        outcome, changed = self.run(header, callingAE, calledAE, moveDestination, session)
        if not changed or outcome in LEFT_OUT:
            return outcome, data
        whole = decodeDataset(data, transferSyntax)
        applyAttributes(whole, header)
        return outcome, encodeDataset(whole, transferSyntax)


def hooksFrom(special, services):
    """``{key: DatasetHook}`` for the special lines present (``ConverterRules.special``)."""
    return {key: DatasetHook(script, HOOK_KINDS[key], services)
            for key, script in special.items() if script is not None and key in HOOK_KINDS}
