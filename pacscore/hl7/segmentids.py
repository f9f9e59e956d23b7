"""The segment IDs of the order messages pacs reads (ORM^O01, OMG^O19,
OMI^O23, HL7 v2.1 to 2.9, withdrawn ones included), of the batch and file
headers and trailers, and ``isSegmentId``, which tells one of them or a
Z-segment's (``ZDS``, a site's own) from three other capitals: ``CVA``,
``NKA``, or ``LOC``, ``PAC``, ``ABS`` (segment IDs of other messages, and
clinical abbreviations) starting a line a RIS user typed into a free-text
field."""

import re

SEGMENT_IDS = frozenset(b"""
    MSH SFT UAC NTE
    PID PD1 PRT ARV NK1 PV1 PV2 IN1 IN2 IN3 GT1 AL1
    ORC TQ1 TQ2 OBR RQD RQ1 RXO ODS ODT ORO RX1 IPC
    CTD DG1 OBX SPM SAC FT1 CTI BLG
    BHS BTS FHS FTS
""".split())
_Z_SEGMENT = re.compile(rb"Z[A-Z0-9]{2}")


def isSegmentId(text):
    """Whether ``text`` (bytes) is a segment ID of the order messages pacs
    reads, or a Z-segment's."""
    return text in SEGMENT_IDS or _Z_SEGMENT.fullmatch(text) is not None
