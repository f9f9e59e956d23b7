"""The retrieves into this archive that it started itself, under way.

Conquest's manual: "Data that is collected by a 'preretrieve' statement
is not processed by import- or export-converters".  The queued ``get``
actions (``preretrieve``, ``get ... from AE`` lines) register the C-MOVE
they send here (``begin``/``end``); the C-STORE sub-operations it causes
carry Move Originator AE Title (0000,1030) = our AE title and Move
Originator Message ID (0000,1031) = that C-MOVE's Message ID
(``brings``), and are stored without the converters.  The Message IDs
come from 0x8000-0xFFFF, unique among those under way, so a C-MOVE that
a user started (``dgate --movepatient``: 1, 2 ... on an association of
its own), whose objects are processed as any, is not taken for one.
"""

from pacscore.dicom import commands

FIRST_ID = 0x8000
LAST_ID = 0xFFFF


class OwnRetrieves:
    """The Message IDs of our own C-MOVEs under way, sent as ``aeTitle``."""

    def __init__(self, aeTitle):
        self.aeTitle = aeTitle
        self._underWay = set()
        self._last = LAST_ID

    def begin(self):
        """The Message ID for a C-MOVE about to be sent; ``end`` it once
        its final response came (or it failed)."""
        for _ in range(LAST_ID - FIRST_ID + 1):
            self._last = FIRST_ID if self._last >= LAST_ID else self._last + 1
            if self._last not in self._underWay:
                break
        self._underWay.add(self._last)
        return self._last

    def end(self, messageID):
        self._underWay.discard(messageID)

    def brings(self, command):
        """Whether a C-STORE-RQ ``command`` is a sub-operation of one of them."""
        originator = command.get(commands.MOVE_ORIGINATOR_AE)
        return (isinstance(originator, str) and originator.strip().upper() == self.aeTitle.strip().upper()
                and command.get(commands.MOVE_ORIGINATOR_MESSAGE_ID) in self._underWay)
