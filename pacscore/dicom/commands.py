"""DIMSE command sets (PS3.7 E.1): always Implicit VR Little Endian.

A hand-written codec for the few dozen command elements: decoding returns a
dict keyed by tag, encoding sorts the tags and adds the group length. Used
for every DIMSE message, so it stays small and fast.  ``asDataset`` and
``fromDataset`` turn a command set into a pydicom Dataset and back, for the
Lua scripts that see it as ``Command``.
"""

import struct

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from pacscore.dicom.pdu import PDUError

COMMAND_GROUP_LENGTH = 0x00000000
AFFECTED_SOP_CLASS_UID = 0x00000002
REQUESTED_SOP_CLASS_UID = 0x00000003
COMMAND_FIELD = 0x00000100
MESSAGE_ID = 0x00000110
MESSAGE_ID_RESPONDED_TO = 0x00000120
MOVE_DESTINATION = 0x00000600
PRIORITY = 0x00000700
COMMAND_DATASET_TYPE = 0x00000800
STATUS = 0x00000900
OFFENDING_ELEMENT = 0x00000901
ERROR_COMMENT = 0x00000902
ERROR_ID = 0x00000903
AFFECTED_SOP_INSTANCE_UID = 0x00001000
REQUESTED_SOP_INSTANCE_UID = 0x00001001
EVENT_TYPE_ID = 0x00001002
ATTRIBUTE_IDENTIFIER_LIST = 0x00001005
ACTION_TYPE_ID = 0x00001008
REMAINING_SUBOPERATIONS = 0x00001020
COMPLETED_SUBOPERATIONS = 0x00001021
FAILED_SUBOPERATIONS = 0x00001022
WARNING_SUBOPERATIONS = 0x00001023
MOVE_ORIGINATOR_AE = 0x00001030
MOVE_ORIGINATOR_MESSAGE_ID = 0x00001031

NO_DATASET = 0x0101
DATASET_PRESENT = 0x0000

# PS3.7 C.4's general statuses
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_OBJECT_INSTANCE = 0x0112
INVALID_ARGUMENT_VALUE = 0x0115
INVALID_OBJECT_INSTANCE = 0x0117
NO_SUCH_SOP_CLASS = 0x0118
CLASS_INSTANCE_CONFLICT = 0x0119
MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121
SOP_CLASS_NOT_SUPPORTED = 0x0122
NO_SUCH_ACTION = 0x0123
NOT_AUTHORIZED = 0x0124
UNRECOGNIZED_OPERATION = 0x0211
MISTYPED_ARGUMENT = 0x0212

# C-STORE failure statuses (PS3.4 B.2.3): A7xx, A9xx, Cxxx
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_GET_RQ, C_GET_RSP = 0x0010, 0x8010
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_CANCEL_RQ = 0x0FFF
N_EVENT_REPORT_RQ, N_EVENT_REPORT_RSP = 0x0100, 0x8100
N_GET_RQ, N_GET_RSP = 0x0110, 0x8110
N_SET_RQ, N_SET_RSP = 0x0120, 0x8120
N_ACTION_RQ, N_ACTION_RSP = 0x0130, 0x8130
N_CREATE_RQ, N_CREATE_RSP = 0x0140, 0x8140
N_DELETE_RQ, N_DELETE_RSP = 0x0150, 0x8150

COMMAND_NAMES = {
    C_STORE_RQ: "C-STORE-RQ", C_STORE_RSP: "C-STORE-RSP", C_GET_RQ: "C-GET-RQ",
    C_GET_RSP: "C-GET-RSP", C_FIND_RQ: "C-FIND-RQ", C_FIND_RSP: "C-FIND-RSP",
    C_MOVE_RQ: "C-MOVE-RQ", C_MOVE_RSP: "C-MOVE-RSP", C_ECHO_RQ: "C-ECHO-RQ",
    C_ECHO_RSP: "C-ECHO-RSP", C_CANCEL_RQ: "C-CANCEL-RQ",
    N_EVENT_REPORT_RQ: "N-EVENT-REPORT-RQ", N_EVENT_REPORT_RSP: "N-EVENT-REPORT-RSP", N_SET_RQ: "N-SET-RQ",
    N_SET_RSP: "N-SET-RSP", N_ACTION_RQ: "N-ACTION-RQ", N_ACTION_RSP: "N-ACTION-RSP", N_CREATE_RQ: "N-CREATE-RQ",
    N_CREATE_RSP: "N-CREATE-RSP", N_GET_RQ: "N-GET-RQ", N_GET_RSP: "N-GET-RSP", N_DELETE_RQ: "N-DELETE-RQ",
    N_DELETE_RSP: "N-DELETE-RSP",
}

_STRING_VRS = ("UI", "AE", "LO")
_VR = {
    COMMAND_GROUP_LENGTH: "UL", AFFECTED_SOP_CLASS_UID: "UI", REQUESTED_SOP_CLASS_UID: "UI",
    COMMAND_FIELD: "US", MESSAGE_ID: "US", MESSAGE_ID_RESPONDED_TO: "US",
    MOVE_DESTINATION: "AE", PRIORITY: "US", COMMAND_DATASET_TYPE: "US", STATUS: "US",
    OFFENDING_ELEMENT: "AT", ERROR_COMMENT: "LO", ERROR_ID: "US",
    AFFECTED_SOP_INSTANCE_UID: "UI", REQUESTED_SOP_INSTANCE_UID: "UI",
    EVENT_TYPE_ID: "US", ATTRIBUTE_IDENTIFIER_LIST: "AT", ACTION_TYPE_ID: "US",
    REMAINING_SUBOPERATIONS: "US", COMPLETED_SUBOPERATIONS: "US",
    FAILED_SUBOPERATIONS: "US", WARNING_SUBOPERATIONS: "US",
    MOVE_ORIGINATOR_AE: "AE", MOVE_ORIGINATOR_MESSAGE_ID: "US",
}
_ELEMENT = struct.Struct("<HHL")
_US = struct.Struct("<H")
_UL = struct.Struct("<L")


def decodeCommand(data):
    """Decode a command set into ``{tag: value}``: ints for US/UL, str for
    UI/AE/LO (padding stripped), a list of tags for AT, raw bytes otherwise.

    Raises PDUError for a command set that is not well formed.
    """
    command = {}
    offset = 0
    end = len(data)
    while offset < end:
        if end - offset < 8:
            raise PDUError(f"truncated command element at offset {offset}")
        group, element, length = _ELEMENT.unpack_from(data, offset)
        offset += 8
        if group != 0 or length > end - offset:
            raise PDUError(f"bad command element ({group:04x},{element:04x}) length {length}")
        value = bytes(data[offset:offset + length])
        offset += length
        tag = element
        vr = _VR.get(tag)
        if vr == "US":
            if length != 2:
                raise PDUError(f"command element (0000,{element:04x}) US with length {length}")
            command[tag] = _US.unpack(value)[0]
        elif vr == "UL":
            if length != 4:
                raise PDUError(f"command element (0000,{element:04x}) UL with length {length}")
            command[tag] = _UL.unpack(value)[0]
        elif vr in _STRING_VRS:
            command[tag] = value.decode("ascii", "replace").strip(" \x00")
        elif vr == "AT":
            command[tag] = [(g << 16) | e for g, e in struct.iter_unpack("<HH", value[:len(value) // 4 * 4])]
        else:
            command[tag] = value
    if COMMAND_FIELD not in command:
        raise PDUError("command set without Command Field (0000,0100)")
    return command


def describeCommand(command):
    """A decoded command set as text for the debug log, one element a line."""
    lines = []
    for tag, value in sorted(command.items()):
        if tag in (COMMAND_FIELD, STATUS):
            value = f"0x{value:04X}" + (f" {COMMAND_NAMES.get(value, '?')}" if tag == COMMAND_FIELD else "")
        elif isinstance(value, list):
            value = " ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in value)
        elif isinstance(value, bytes):
            value = f"<{len(value)} bytes>"
        lines.append(f"(0000,{tag:04X}) {_VR.get(tag, 'UN')} {keyword_for_tag(tag) or '?'}: {value}")
    return "\n".join(lines)


def _encodeValue(tag, value):
    vr = _VR.get(tag)
    if vr == "US":
        return _US.pack(value)
    if vr == "UL":
        return _UL.pack(value)
    if vr == "AT":
        return b"".join(struct.pack("<HH", t >> 16, t & 0xFFFF) for t in value)
    if isinstance(value, str):
        raw = value.encode("ascii", "replace")
        if len(raw) % 2:
            raw += b"\x00" if vr == "UI" else b" "
        return raw
    return bytes(value)


def encodeCommand(command):
    """Encode ``{tag: value}`` as a command set, with (0000,0000) first."""
    parts = []
    for tag in sorted(command):
        if tag == COMMAND_GROUP_LENGTH:
            continue
        raw = _encodeValue(tag, command[tag])
        parts.append(_ELEMENT.pack(0, tag, len(raw)))
        parts.append(raw)
    body = b"".join(parts)
    return _ELEMENT.pack(0, 0, 4) + _UL.pack(len(body)) + body


def asDataset(command):
    """``command`` (``{tag: value}``) as a pydicom Dataset: its elements with
    their VRs, one of no known VR as UN."""
    dataset = Dataset()
    for tag, value in command.items():
        dataset.add_new(tag, _VR.get(tag, "UN"), value)
    return dataset


def fromDataset(dataset):
    """The command set of a Dataset ``asDataset`` made, changed or not since:
    its group 0000 elements (others are no part of a command set), encoded
    and decoded again as a received one is; ValueError when they are no
    command set that can be sent (no Command Field, text in a US ...)."""
    command = {}
    for element in dataset:
        if element.tag.group != 0:
            continue
        value = element.value
        if element.VR == "AT":  # a list of tags, as decodeCommand gives them
            value = list(value) if element.VM > 1 else [value] if element.VM else []
        elif value is None:  # emptied
            value = ""
        command[int(element.tag)] = value
    try:
        return decodeCommand(encodeCommand(command))
    except (PDUError, struct.error, TypeError) as e:
        raise ValueError(f"no command set: {e}") from None


def isWarning(status):
    """A Warning status of PS3.7 annex C: 0x0001, 0x0107 (attribute list
    error), 0x0116 (attribute value out of range) or 0xBxxx; the object of
    a C-STORE answered so was stored."""
    return status in (0x0001, 0x0107, 0x0116) or status & 0xF000 == 0xB000


# PS3.4 B.2.3's C-STORE warnings and PS3.7 C.4's general ones (``isWarning``: the object was stored)
STORE_WARNINGS = {0x0001: "requested optional attributes not supported", 0x0107: "attribute list error",
                  0x0116: "attribute value out of range", 0xB000: "coercion of data elements",
                  0xB006: "elements discarded", 0xB007: "data set does not match SOP class"}


def storeWarning(status):
    """The meaning of a C-STORE Warning ``status`` (``isWarning``)."""
    return STORE_WARNINGS.get(status, "warning")


STORE_FAILURES = "0x0110, 0x0122, 0x0124, 0xA7xx, 0xA9xx or 0xCxxx"


def isStoreFailure(status):
    """Whether ``status`` is a Failure status of a C-STORE (PS3.4 B.2.3:
    ``STORE_FAILURES``): not Success, a Warning, or no 16-bit number."""
    return status in (PROCESSING_FAILURE, SOP_CLASS_NOT_SUPPORTED, NOT_AUTHORIZED) or status >> 8 in (0xA7, 0xA9) or status >> 12 == 0xC


# PS3.7 C.4's failure statuses a C-STORE SCP answers alike to every retry of an object
# (0x0110 processing failure and 0x0213 resource limitation may pass, as A7xx may)
ALWAYS_REFUSED = {INVALID_ATTRIBUTE_VALUE: "invalid attribute value", INVALID_OBJECT_INSTANCE: "invalid SOP instance",
                  NO_SUCH_SOP_CLASS: "no such SOP class", CLASS_INSTANCE_CONFLICT: "class-instance conflict",
                  MISSING_ATTRIBUTE: "missing attribute", MISSING_ATTRIBUTE_VALUE: "missing attribute value",
                  SOP_CLASS_NOT_SUPPORTED: "SOP class not supported", NOT_AUTHORIZED: "not authorized",
                  UNRECOGNIZED_OPERATION: "unrecognized operation", MISTYPED_ARGUMENT: "mistyped argument"}


def storeRefusedForGood(status):
    """The meaning of a C-STORE failure ``status`` a peer will answer every
    time (A9xx, Cxxx, ``ALWAYS_REFUSED``: a retry would change nothing,
    unlike A7xx), else None."""
    meaning = ALWAYS_REFUSED.get(status)
    if meaning is not None:
        return meaning
    if status & 0xFF00 == DATASET_DOES_NOT_MATCH:
        return "data set does not match SOP class"
    if status & 0xF000 == CANNOT_UNDERSTAND:
        return "cannot understand"
    return None


def response(request, commandField, status, extra=None):
    """The response command to ``request``: echoes the message ID and the
    affected SOP class/instance; ``extra`` maps more tags (ints) to values."""
    rsp = {
        COMMAND_FIELD: commandField,
        MESSAGE_ID_RESPONDED_TO: request.get(MESSAGE_ID, 0),
        COMMAND_DATASET_TYPE: NO_DATASET,
        STATUS: status,
    }
    for tag in (AFFECTED_SOP_CLASS_UID, AFFECTED_SOP_INSTANCE_UID):
        value = request.get(tag)
        if value:
            rsp[tag] = value
    if REQUESTED_SOP_CLASS_UID in request and AFFECTED_SOP_CLASS_UID not in rsp:
        rsp[AFFECTED_SOP_CLASS_UID] = request[REQUESTED_SOP_CLASS_UID]
    rsp.update(extra or {})
    return rsp
