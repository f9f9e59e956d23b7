"""Modality Worklist C-FIND SCP (PS3.4 K, SOP class 1.2.840.10008.5.1.4.31).

A worklist identifier has no Query/Retrieve Level (one sent is ignored);
its Scheduled Procedure Step Sequence item holds keys like any others.  The
dicom.sql *WorkList* table stores one scheduled step per row and may mark
the columns of a sequence's item between ``DT_STARTSEQUENCE`` and
``DT_ENDSEQUENCE`` lines tagged with the sequence.  As in Conquest (manual
7.8: the markers are descriptive only), an answer mimics the request's
organisation: it holds exactly the requested attributes, nested as
requested, each valued by tag from the row wherever dicom.sql puts its
column and in the data dictionary's VR (that of the request for tags it
does not know; a value the VR cannot hold is answered empty):

- a key inside the item of any sequence matches like a top-level
  one (``pacscore.db.worklistquery``; ``""`` asks for Empty Value
  Matching, as in C-FIND) and is returned in the one item of that sequence;
- a sequence the markers name, requested with no item or an empty one,
  gets an item with every column dicom.sql places in it; any other is
  then returned empty (zero items);
- keys without a column or a value are returned empty; those with a value
  but no column to match make the matches 0xFF01, as in the Q/R C-FIND
  (PS3.4 K.4.1.1);
- a Private Creator is no match key: it is returned with the request's
  value, in LO, as in C-FIND, naming its block (PS3.5 7.8.1);
- a sequence of more than one item refuses the request with 0xA900, as
  wlmscpfs does (PS3.4 C.2.2.2.6: a sequence key holds one item).

With ``WorkListReturnsISO_IR_100`` (the default) answers declare ISO_IR 100
whenever their text fits Latin-1 and ISO_IR 192 (UTF-8) otherwise; without
it the request's character set is kept when it can carry the text, and an
ASCII answer to a request without one has none (as C-FIND answers).
Matching and encoding run in a reader thread of the index; the answers go
out through the C-FIND response loop of ``pacscore.dicom.find``.
"""

from typing import NamedTuple

from pydicom.dataset import Dataset
from pydicom.tag import Tag
from twisted.internet import defer
from twisted.logger import Logger

from pacscore.db.query import withEmptyValueMatching
from pacscore.debuglog import COMMANDS
from pacscore.dicom.datasets import encodeDataset
from pacscore.dicom.find import (DESTROYED, SUCCESS, answerFind, convertIdentifier, dumpDatasets, resultFilter,
                                 sendResponse)
from pacscore.dicom.identifiers import (
    IDENTIFIER_DOES_NOT_MATCH, TEXT_VRS, BadIdentifier, addCharacterSet, answerElement, answerVR, characterSetOf,
    checkKeys, datasetKeys, decodeIdentifier, logMalformed, malformedValues, tagName)
from pacscore.dicom.timing import timed

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"


class Returned(NamedTuple):
    """One attribute of the answers."""

    tag: int
    vr: str
    item: tuple | None = None  # a sequence: the Returned of its one item; None for zero items
    value: str | None = None   # the answer's text, when not the row's (a Private Creator's: the request's)


class WorklistRequest(NamedTuple):
    """What a worklist identifier asks."""

    keys: list            # QueryKey of every non-sequence attribute, items' flattened in
    returned: tuple       # Returned, as nested in the request
    characterSet: str     # the request's (0008,0005), "" when absent


def _vrOf(column):
    """The VR answering with a dicom.sql column (a sequence marker: SQ)."""
    if column.isSequenceMarker:
        return "SQ"
    return answerVR(column.tag, column.vr)


def sequenceMembers(columns):
    """``{sequence tag: ((tag, vr), ...)}``: what the item of each sequence
    of a dicom.sql *WorkList* table holds, in the file's order (a nested
    sequence as ``(its tag, "SQ")``).  Raises ``ValueError`` when the
    sequence markers do not pair up."""
    members = {}
    enclosing = []
    for column in columns:
        if column.dicomType == "DT_ENDSEQUENCE":
            if not enclosing or enclosing[-1] != column.tag:
                raise ValueError(f"dicom.sql *WorkList*: DT_ENDSEQUENCE of ({column.group:04X},"
                                 f"{column.element:04X}) closes no sequence started before")
            enclosing.pop()
            continue
        if enclosing:
            members[enclosing[-1]] += ((column.tag, _vrOf(column)),)
        if column.dicomType == "DT_STARTSEQUENCE":
            members.setdefault(column.tag, ())
            enclosing.append(column.tag)
    if enclosing:
        raise ValueError(f"dicom.sql *WorkList*: no DT_ENDSEQUENCE for the sequence {tagName(enclosing[-1])}")
    return members


class WorklistFindService:
    """Answers Modality Worklist C-FIND from the index's worklist table.

    ``query`` is a ``pacscore.db.worklistquery.WorklistQuery``, ``columns``
    the dicom.sql *WorkList* columns (sequence markers included).
    """

    log = Logger()

    def __init__(self, index, query, columns, returnsIsoIr100=True, clock=None, counters=None,
                 requestHook=None, resultHook=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.index = index
        self.query = query
        self.sequences = sequenceMembers(columns)
        self.returnsIsoIr100 = returnsIsoIr100
        self.clock = clock
        self.counters = counters if counters is not None else {}
        self.requestHook = requestHook  # WorkListQueryConverter0 (pacscore.converters.hooks.DatasetHook)
        self.resultHook = resultHook    # ModalityWorkListQueryResultConverter0

    def handle(self, protocol, contextId, command, dataset):
        return defer.ensureDeferred(self._find(protocol, contextId, command, dataset))

    async def _find(self, protocol, contextId, command, dataset):
        _, syntax = protocol.association.contexts[contextId]
        try:
            data = await convertIdentifier(self.requestHook, self.clock, protocol, dataset, syntax)
            if data is DESTROYED:
                return sendResponse(protocol, contextId, command, SUCCESS)
            request = self.readRequest(data, syntax, protocol.peerName())
        except BadIdentifier as e:
            self.log.warn("{peer}: worklist C-FIND refused: {error}", peer=protocol.peerName(), error=e)
            return sendResponse(protocol, contextId, command, e.status, comment=str(e))
        self.counters["worklistQueries"] = self.counters.get("worklistQueries", 0) + 1
        keep = resultFilter(self.resultHook, protocol)
        matches = timed(self.index.queryForPeer(self._matches, request, syntax, keep), self.counters,
                        "worklistQueryTime").addCallback(self._dumped, protocol.peerName(), syntax)
        await answerFind(protocol, contextId, command, matches,
                         self.clock, self.log, "Modality Worklist C-FIND", self.query.unmatchedKeys(request.keys))

    def _dumped(self, matches, peer, syntax):
        d = dumpDatasets(self.clock, peer, "worklist query result", matches, syntax, COMMANDS)
        return d.addCallback(lambda _: matches)

    def _matches(self, connection, request, transferSyntax, keep=None):
        """In a reader thread: the encoded matches."""
        matches = (self.encodeMatch(request, row, transferSyntax, keep)
                   for row in self.query.find(connection, request.keys))
        return [match for match in matches if match is not None]

    # -- identifiers -----------------------------------------------------

    def readRequest(self, data, transferSyntax, peer=None):
        """The ``WorklistRequest`` of an identifier's bytes (from ``peer``,
        whose values taken as they are ``logMalformed`` names once the
        request is read without a refusal); raises ``BadIdentifier``."""
        dataset = decodeIdentifier(data, transferSyntax)
        keys = []
        returned = self._readItem(dataset, keys)
        keys = withEmptyValueMatching(keys)
        checkKeys(keys)
        if peer is not None:
            logMalformed(malformedValues(dataset), peer)
        return WorklistRequest(keys, returned, characterSetOf(dataset))

    def _readItem(self, dataset, keys):
        """The ``Returned`` of a data set's attributes; adds their keys to
        ``keys``, those of a sequence's item flattened in.  Raises
        ``BadIdentifier`` (A900, as wlmscpfs answers) for a sequence of
        more than one item: a sequence key holds a single item (PS3.4
        C.2.2.2.6), and CT and MR in two would be taken for either."""
        returned = []
        for key in datasetKeys(dataset):
            if Tag(key.tag).is_private_creator:
                # It names its block in the answers as in the request (PS3.5 7.8.1), as in C-FIND.
                keys.append(key)
                returned.append(Returned(key.tag, "LO", value=key.value))
                continue
            vr = answerVR(key.tag, key.vr)
            if vr != "SQ":
                keys.append(key)
                returned.append(Returned(key.tag, vr))
                continue
            items = dataset[key.tag].value if key.vr == "SQ" else ()
            if len(items) > 1:
                raise BadIdentifier(f"{tagName(key.tag)} has {len(items)} items, a sequence key holds one "
                                    f"(PS3.4 C.2.2.2.6)", IDENTIFIER_DOES_NOT_MATCH)
            item = self._readItem(items[0], keys) if items else ()
            if not item and key.tag in self.sequences:
                item = self._wholeItem(key.tag)
            returned.append(Returned(key.tag, "SQ", item or None))
        return tuple(returned)

    def _wholeItem(self, tag):
        """The ``Returned`` of every column dicom.sql puts in sequence ``tag``."""
        return tuple(Returned(member, vr, self._wholeItem(member) if vr == "SQ" else None)
                     for member, vr in self.sequences[tag])

    def encodeMatch(self, request, row, transferSyntax, keep=None):
        """The answer's bytes for one row (``{tag: text}``), or None when
        ``keep(dataset)`` (a result converter line) leaves it out."""
        texts = []
        dataset = _build(request.returned, row, texts)
        requested = "ISO_IR 100" if self.returnsIsoIr100 else request.characterSet
        addCharacterSet(dataset, requested, texts)
        if keep is not None and not keep(dataset):
            return None
        return encodeDataset(dataset, transferSyntax)


def _build(returned, row, texts):
    """The data set of ``returned`` valued from ``row``; collects the text values in ``texts``."""
    dataset = Dataset()
    for entry in returned:
        if entry.vr == "SQ":
            dataset.add_new(entry.tag, "SQ", [] if entry.item is None else [_build(entry.item, row, texts)])
            continue
        text = row.get(entry.tag, "") if entry.value is None else entry.value
        if entry.vr in TEXT_VRS:
            texts.append(text)
        dataset.add(answerElement(entry.tag, entry.vr, text))
    return dataset
