"""The retrieves into this archive that it started itself, under way.

Conquest's manual: "Data that is collected by a 'preretrieve' statement
is not processed by import- or export-converters".  The queued ``get``
actions (``preretrieve``, ``get ... from AE`` lines) register the C-MOVE
they send here (``begin``/``end``); the C-STORE sub-operations it causes
carry Move Originator AE Title (0000,1030) = our AE title and Move
Originator Message ID (0000,1031) = that C-MOVE's Message ID
(``brings``), and are stored without the converters.  A virtual
server's C-MOVEs (``pacscore.dicom.virtual``) register too, with the AE
title of the archive they fetch from (``begin(source)``): what they bring
is data arriving here, which the import and export converters see, but a
``forward`` to that archive (``fetchedFrom``) would send each object
straight back, and is not queued (``pacscore.export.commands``); each
object one of them stores is told to the fetch as its C-STORE comes
(``storing``), which deletes only those with ``CacheVirtualData = 0``; so
is each object any other store brings (a modality's C-STORE, STOW-RS:
``hearOthers``), which the fetch then leaves here.  The
Message IDs come from 0x8000-0xFFFF, unique among those under way, so a
C-MOVE that a user started (``dgate --movepatient``: 1, 2 ... on an
association of its own), whose objects are processed as any, is not
taken for one.
"""

from pacscore.dicom import commands

FIRST_ID = 0x8000
LAST_ID = 0xFFFF


class OwnRetrieves:
    """The Message IDs of our own C-MOVEs under way, sent as ``aeTitle``."""

    def __init__(self, aeTitle):
        self.aeTitle = aeTitle
        self._underWay = {}  # Message ID: the AE title a virtual server fetches from, None for a get
        self._onStoring = {}  # Message ID of a virtual server's C-MOVE: told each SOP Instance UID it stores
        self._others = None  # told each SOP Instance UID any other store stores (hearOthers)
        self._last = LAST_ID

    def begin(self, source=None, onStoring=None):
        """The Message ID for a C-MOVE about to be sent; ``end`` it once
        its final response came (or it failed).  ``source``: the AE title
        of the archive a virtual server's C-MOVE fetches from; None for a
        get, whose objects skip the converters.  ``onStoring(uid)``, if
        given, hears of each object its C-STOREs store (``storing``)."""
        for _ in range(LAST_ID - FIRST_ID + 1):
            self._last = FIRST_ID if self._last >= LAST_ID else self._last + 1
            if self._last not in self._underWay:
                break
        self._underWay[self._last] = source
        if onStoring is not None:
            self._onStoring[self._last] = onStoring
        return self._last

    def end(self, messageID):
        self._underWay.pop(messageID, None)
        self._onStoring.pop(messageID, None)

    def hearOthers(self, onOther):
        """``onOther(uid)`` hears of each store that is no sub-operation of
        a C-MOVE registered with an ``onStoring`` (``storing``)."""
        self._others = onOther

    def storing(self, command, uid):
        """A store of the object ``uid`` comes (the C-STORE-RQ ``command``;
        None for one that came otherwise, STOW-RS): told to the ``onStoring``
        of the C-MOVE it is a sub-operation of, else to ``hearOthers``'s
        ``onOther``.  What it returns: None or ``ended(stored)``, called
        once the store ended (which may be after that C-MOVE ended),
        ``stored`` whether the object was stored."""
        onStoring = self._onStoring.get(self._messageID(command)) if command is not None else None
        onStoring = onStoring or self._others
        return None if onStoring is None else onStoring(uid)

    def brings(self, command):
        """Whether a C-STORE-RQ ``command`` is a sub-operation of a get's
        C-MOVE (stored without the converters)."""
        messageID = self._messageID(command)
        return messageID in self._underWay and self._underWay[messageID] is None

    def fetchedFrom(self, command):
        """The AE title of the archive a virtual server fetches from when a
        C-STORE-RQ ``command`` is a sub-operation of its C-MOVE, else None."""
        return self._underWay.get(self._messageID(command))

    def _messageID(self, command):
        """The Move Originator Message ID of ``command`` when we are its
        Move Originator AE Title, else None."""
        originator = command.get(commands.MOVE_ORIGINATOR_AE)
        if isinstance(originator, str) and originator.strip().upper() == self.aeTitle.strip().upper():
            return command.get(commands.MOVE_ORIGINATOR_MESSAGE_ID)
        return None
