"""Association negotiation (PS3.8 7.1, PS3.7 D.3.3), both roles.

Screens an A-ASSOCIATE-RQ from its bytes - the AE titles, the number of
presentation contexts and of their transfer syntaxes, each context cut to
the transfer syntax it gets (the requestor's preferred one that we
accept, so objects are stored as they arrive; for a C-GET's storage
context, which we only send on, its first uncompressed one if it proposed
one, which every object can go in, unless its first is a video syntax
we cannot decode, for a video class: ``_chosen``) - then decodes what is left
with pynetdicom's PDU codec, checks the application context and the rest,
and builds the A-ASSOCIATE-AC or -RJ.  For the requestor it
builds our A-ASSOCIATE-RQ and reads the peer's AC or RJ.
"""

from dataclasses import dataclass, field, replace
from typing import NamedTuple

from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE, AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification, ImplementationVersionNameNotification,
    MaximumLengthNotification, SCP_SCU_RoleSelectionNegotiation)
from pynetdicom.presentation import PresentationContext

from pacscore.codecs.syntaxes import NATIVE, canDecode
from pacscore.dicom.pdu import PDUError
from pacscore.dicom.sopclasses import VIDEO_STORAGE_CLASSES

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = "2.25.157963312395263437426946530437396409427"
IMPLEMENTATION_VERSION = "PACS_0.1"

# Presentation context results (PS3.8 9.3.3.2).
ACCEPTANCE = 0
USER_REJECTION = 1
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

# A-ASSOCIATE-RJ fields (PS3.8 9.3.4).
REJECTED_PERMANENT = 1
REJECTED_TRANSIENT = 2
SOURCE_USER = 1
SOURCE_ACSE = 2
USER_NO_REASON = 1
USER_APPLICATION_CONTEXT = 2
USER_CALLING_AE = 3
USER_CALLED_AE = 7
SOURCE_PRESENTATION = 3  # service provider (presentation related function)
PRESENTATION_LOCAL_LIMIT = 2  # local limit exceeded
SMALLEST_MAX_PDU_LENGTH = 256  # a peer asking for smaller PDUs is refused (PS3.8 sets no floor; this bounds
                               # the PDUs a large object takes)
PRESENTATION_CONTEXT = 0x20
PRESENTATION_CONTEXT_RESULT = 0x21
ABSTRACT_SYNTAX_ITEM = 0x30
TRANSFER_SYNTAX_ITEM = 0x40
USER_INFORMATION = 0x50
MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: odd presentation context ids 1-255
MAX_TRANSFER_SYNTAXES = 64  # in one presentation context (DCMTK takes 50; the standard defines about 60)
KNOWN_USER_ITEMS = frozenset(range(0x51, 0x5A))  # PS3.7 D.3.3 and PS3.8 D.3.3: max length ... user identity AC
IMPLEMENTATION_VERSION_ITEM = 0x55
MAX_VERSION_NAME = 16  # PS3.7 D.3.3.2.3: 1 to 16 characters of the default repertoire, no backslash
ACSE_PROTOCOL_VERSION = 2

MAX_ASYNC_OPERATIONS = 16
AE_FIELDS = slice(10, 42)  # called and calling AE title in an A-ASSOCIATE-RQ/AC PDU
AC_ITEMS = 74  # where the items of an A-ASSOCIATE-AC PDU begin


class TitleStyle(NamedTuple):
    """How our A-ASSOCIATE-RQ and -AC write AE titles: Conquest's
    PadAEWithZeros = 1 pads both with NULs instead of spaces, SendUpperCaseAE
    (any number but 0) sends the called AE title of our requests in
    upper case."""

    zeroPadded: bool = False
    upperCaseCalled: bool = False

    @classmethod
    def fromIni(cls, ini):
        return cls(ini.getint("PadAEWithZeros", 0) == 1,
                   ini.getint("SendUpperCaseAE", 0) != 0)

    def calledAE(self, ae):
        return ae.upper() if self.upperCaseCalled else ae

    def written(self, pdu):
        """An encoded A-ASSOCIATE-RQ or -AC with its AE titles padded so."""
        if not self.zeroPadded:
            return pdu
        titles = bytes(pdu[AE_FIELDS])
        padded = b"".join(title.rstrip(b" ").ljust(16, b"\0") for title in (titles[:16], titles[16:]))
        return bytes(pdu[:AE_FIELDS.start]) + padded + bytes(pdu[AE_FIELDS.stop:])


PLAIN_TITLES = TitleStyle()


class AssociationRejected(Exception):
    """The request is refused; ``pdu`` is the encoded A-ASSOCIATE-RJ."""

    def __init__(self, message, result, source, reason):
        super().__init__(message)
        rj = A_ASSOCIATE_RJ()
        rj.result, rj.source, rj.reason_diagnostic = result, source, reason
        self.pdu = rj.encode()


@dataclass
class AcceptorPolicy:
    """What this server accepts.

    ``abstractSyntaxes`` maps each SOP class UID we serve to whether we can
    also take the SCU role for it (storage classes: C-GET sends C-STOREs
    back to the requestor). ``aeTitles`` are the called AE titles we answer
    to (a ``~xx`` compression suffix is allowed after them, manual 7.7),
    any when empty (Conquest's dgatesop.lst without LocalAE lines);
    ``callingAETitles`` restricts the requestors when not empty.

    A policy remembers the requests it accepted (``negotiate``), so it is
    never changed in place: a changed configuration makes a new one.
    """

    aeTitles: list[str]
    abstractSyntaxes: dict[str, bool]
    transferSyntaxes: set[str]
    callingAETitles: set[str] = field(default_factory=set)
    maxPDULength: int = 262144
    titleStyle: TitleStyle = PLAIN_TITLES  # how the A-ASSOCIATE-AC writes the AE titles
    accepted: dict = field(default_factory=dict, repr=False, compare=False)  # RQ body -> Association
    rememberAccepted = 64        # requests
    rememberLargest = 64 << 10   # bytes of one request (storescu's 112 contexts: 9.6 KB)

    def storesClass(self, sopClass):
        """Whether C-STOREs of ``sopClass`` are taken: a storage class dgatesop.lst lists."""
        return self.abstractSyntaxes.get(sopClass, False)

    def takesSyntax(self, transferSyntax):
        """Whether a presentation context in ``transferSyntax`` is accepted."""
        return transferSyntax in self.transferSyntaxes


@dataclass
class Association:
    """The outcome of a successful negotiation."""

    callingAE: str
    calledAE: str
    compression: str | None            # the "xx" of CALLED~xx, else None
    peerMaxPDULength: int              # 0 = unlimited
    peerImplementationClassUID: str
    peerImplementationVersion: str
    contexts: dict[int, tuple[str, str]]   # accepted id -> (abstract, transfer syntax)
    rolesAsSCU: set[str]                   # SOP classes for which we may act as SCU
    peerNotSCU: frozenset[str] = frozenset()  # SOP classes whose requests the requestor gave up (SCU role 0)
    maxOperationsInvoked: int = 1
    maxOperationsPerformed: int = 1
    acPDU: bytes = b""
    notes: tuple[str, ...] = ()  # what was taken leniently from the request, to log with the peer's name


def splitCalledAE(called):
    """``"SERVER~j2"`` -> ``("SERVER", "j2")``; no suffix -> ``(called, None)``."""
    base, sep, suffix = called.partition("~")
    return (base, suffix or None) if sep else (called, None)


def _userItems(userInformation):
    items = {}
    for item in userInformation:
        items.setdefault(type(item), []).append(item)
    return items


def _firstText(items, attribute):
    """``attribute`` of the first user information item as text, or ""."""
    if not items:
        return ""
    value = getattr(items[0], attribute)
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _ourUserItems(maxPDULength):
    """Maximum length, implementation class UID and version: sent either way."""
    mx = MaximumLengthNotification()
    mx.maximum_length_received = maxPDULength
    uid = ImplementationClassUIDNotification()
    uid.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = IMPLEMENTATION_VERSION
    return [mx, uid, version]


def _roleItems(roles):
    """SCP/SCU role selection items for ``{sopClass: (scu, scp)}``."""
    items = []
    for sopClass, (scu, scp) in roles.items():
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = sopClass
        role.scu_role = scu
        role.scp_role = scp
        items.append(role)
    return items


def _spacePadded(body):
    """An A-ASSOCIATE-RQ/AC body with NULs in its AE titles made spaces:
    Conquest pads them with zeros (PadAEWithZeros), pynetdicom refuses them."""
    titles = body[4:36]
    return body if b"\x00" not in titles else bytes(body[:4]) + bytes(titles).replace(b"\x00", b" ") + bytes(body[36:])


def _usableVersionName(value, notes):
    """An Implementation Version Name as pynetdicom takes it: cut to 16
    characters, a byte outside printable ASCII or a backslash made "?" (DCMTK,
    and so Orthanc, take any); noted in ``notes`` when changed."""
    usable = bytes(b if 0x20 <= b < 0x7F and b != 0x5C else 0x3F for b in value[:MAX_VERSION_NAME])
    if usable != value:
        notes.append(f"Implementation Version Name {value.decode('latin-1')!r} is not at most 16 printable "
                     f"characters (PS3.7 D.3.3.2.3): taken as {usable.decode('ascii')!r}")
    return usable


def _lenientUserItems(body, notes):
    """An A-ASSOCIATE-AC body with its User Information item made
    ``_lenientUserInformation``; as it is when its items do not parse."""
    try:
        items = [_lenientUserInformation(item, notes) if itemType == USER_INFORMATION else item
                 for itemType, item in _items(body, 68, "the A-ASSOCIATE-AC")]
    except PDUError:
        return body
    return bytes(body[:68]) + b"".join(items)


def _lenientUserInformation(item, notes):
    """A User Information item without the sub-items of types it does not
    define, which PS3.8 D.2 says an acceptor ignores (pynetdicom refuses
    them), and with an Implementation Version Name pynetdicom takes
    (``_usableVersionName``); a sub-item overrunning the item, and what
    follows it, is dropped as one of no type it defines."""
    kept = []
    for subType, subItem in _items(item, 4, "the User Information", lenient=True):  # a damaged last one dropped
        if subType == IMPLEMENTATION_VERSION_ITEM:
            name = _usableVersionName(bytes(subItem[4:]), notes)
            kept.append(bytes((subType, 0)) + len(name).to_bytes(2, "big") + name)
        elif subType in KNOWN_USER_ITEMS:
            kept.append(bytes(subItem))
    value = b"".join(kept)
    return bytes((USER_INFORMATION, 0)) + len(value).to_bytes(2, "big") + value


def _items(data, start, what, lenient=False):
    """``(type, item bytes)`` of each item (type, reserved byte, 2-byte
    length, value) of ``data`` from ``start``, a tail too short for an item
    header ignored (as DCMTK does); PDUError for one that does not fit in
    ``what``, or with ``lenient`` the end of them."""
    position = start
    while position + 4 <= len(data):
        length = int.from_bytes(data[position + 2:position + 4], "big")
        end = position + 4 + length
        if end > len(data):
            if lenient:
                return
            raise PDUError(f"undecodable A-ASSOCIATE-RQ: an item of {what} overruns it")
        yield data[position], data[position:end]
        position = end


def _text(data):
    """A text field of an A-ASSOCIATE-RQ (an AE title, a UID) without its padding."""
    return bytes(data).replace(b"\x00", b" ").decode("ascii", "replace").strip()


def _screened(body, policy, notes):
    """An A-ASSOCIATE-RQ body checked for what is refused at once, before
    pynetdicom decodes it (a 1 MB request of 36,000 transfer syntaxes takes
    it seconds): AE titles we do not answer to, more than ``MAX_CONTEXTS``
    presentation contexts or ``MAX_TRANSFER_SYNTAXES`` in one
    (``AssociationRejected``), an item that overruns it (``PDUError``).
    Returned with each context's transfer syntaxes cut to the one
    ``_negotiate`` would choose (the first we take, else the first
    proposed), its User Information item made ``_lenientUserInformation``,
    and the contexts numbered 1, 3, 5 ... for pynetdicom, which refuses
    even IDs (PS3.8 9.3.2.2 asks odd ones; DCMTK, and so Orthanc, take
    any): ``(body, ids)``, ``ids`` the ID proposed of each context in
    order, a context whose ID came before left out, as DCMTK keeps the
    first (what was changed added to ``notes``)."""
    if len(body) < 68:
        return body, []  # pynetdicom says what is wrong
    called, calling = _text(body[4:20]), _text(body[20:36])
    if policy.aeTitles and splitCalledAE(called)[0] not in policy.aeTitles:
        raise AssociationRejected(f"called AE title {called!r} is not ours ({', '.join(policy.aeTitles)})",
                                  REJECTED_PERMANENT, SOURCE_USER, USER_CALLED_AE)
    if policy.callingAETitles and calling not in policy.callingAETitles:
        raise AssociationRejected(f"calling AE title {calling!r} is not allowed by dgatesop.lst",
                                  REJECTED_PERMANENT, SOURCE_USER, USER_CALLING_AE)
    kept, contexts, ids, twice = [bytes(body[:68])], 0, [], set()
    for itemType, item in _items(body, 68, "the A-ASSOCIATE-RQ"):
        if itemType == PRESENTATION_CONTEXT:
            contexts += 1
            if contexts > MAX_CONTEXTS:
                raise AssociationRejected(f"more than {MAX_CONTEXTS} presentation contexts proposed (PS3.8 allows "
                                          f"{MAX_CONTEXTS})", REJECTED_PERMANENT, SOURCE_USER, USER_NO_REASON)
            if len(item) < 8:
                raise PDUError(f"undecodable A-ASSOCIATE-RQ: a presentation context item of {len(item)} bytes")
            proposed = item[4]
            if proposed in ids:
                twice.add(proposed)
                continue
            item = _fewerSyntaxes(bytes(item), policy, 2 * len(ids) + 1)
            ids.append(proposed)
        elif itemType == USER_INFORMATION:
            item = _lenientUserInformation(item, notes)
        kept.append(item)
    even = [contextId for contextId in ids if not contextId & 1]
    if even:
        notes.append(f"presentation context ID {', '.join(map(str, even))} even (PS3.8 9.3.2.2 asks odd ones): "
                     f"answered as proposed")
    if twice:
        notes.append(f"presentation context ID {', '.join(map(str, sorted(twice)))} proposed more than once: "
                     f"only its first context answered")
    return b"".join(kept), ids


def _chosen(taken, sendsOnly, abstract):
    """The transfer syntax a context is accepted in, of ``taken``, those
    proposed that we take, in the requestor's order: its first, so that
    objects are stored as they arrive; but for a context we only send on
    (``sendsOnly``: a C-GET's storage context, the requestor taking the SCP
    role and not the SCU one) its first uncompressed one when it proposed
    one, as Orthanc chooses: such a syntax is fixed before any object is
    known, every object can go in an uncompressed one, and a compressed one
    would fail those its encoder cannot take (JPEG Baseline a 16-bit image,
    JPEG lossless or RLE a 1-bit or float one, JPEG 2000 one under 32
    pixels across). A requestor wanting objects compressed where they can
    be proposes that syntax in a context of its own, as pacs does for a
    C-MOVE (``retrieve.contextsFor``), and calls AE~xx (``retrieve.choices``).
    A first one we cannot decode (MPEG-2, MPEG-4, HEVC: stored as received
    only, getscu +xn) is kept there too when ``abstract`` is a video
    storage class, the classes those syntaxes are for: objects stored in it
    can go in no other. One we can decode (HTJ2K) is not, since what is
    stored in it can go uncompressed too; nor one for another class (getscu
    +xn proposes MPEG-4 for every storage class, and its CT images or PDFs
    go uncompressed).
    A C-GET requestor keeping the SCU role too (a workstation storing and
    getting on one association) gets its first as well: it may store on
    that context objects it holds in that syntax and may not decompress."""
    if sendsOnly and (canDecode(taken[0]) or abstract not in VIDEO_STORAGE_CLASSES):
        return next((syntax for syntax in taken if syntax in NATIVE), taken[0])
    return taken[0]


def _fewerSyntaxes(item, policy, contextId):
    """A presentation context item with only the transfer syntaxes it may
    be accepted in (``_chosen``: the first we take, and the first
    uncompressed one we take after it), or the first proposed, named in a
    refusal, numbered ``contextId``."""
    others, syntaxes = [], []
    for subType, subItem in _items(item, 8, "a presentation context"):
        (syntaxes if subType == TRANSFER_SYNTAX_ITEM else others).append(subItem)
    if len(syntaxes) > MAX_TRANSFER_SYNTAXES:
        raise AssociationRejected(f"presentation context {item[4]} proposes {len(syntaxes)} transfer syntaxes, "
                                  f"more than the {MAX_TRANSFER_SYNTAXES} taken",
                                  REJECTED_PERMANENT, SOURCE_USER, USER_NO_REASON)
    taken = [ts for ts in syntaxes if policy.takesSyntax(_text(ts[4:]))]
    uncompressed = [ts for ts in taken if _text(ts[4:]) in NATIVE][:1]
    kept = list(dict.fromkeys(taken[:1] + uncompressed)) if taken else syntaxes[:1]
    value = bytes((contextId,)) + item[5:8] + b"".join(others) + b"".join(kept)
    return item[:2] + len(value).to_bytes(2, "big") + value


def _decodePDU(pduClass, pduType, body):
    """A pynetdicom PDU object decoded from the body of a PDU, or PDUError;
    an A-ASSOCIATE-RQ/AC's AE titles ``_spacePadded``, an AC's User
    Information made lenient (``_lenientUserItems``, an RQ's is when it
    is ``_screened``)."""
    if pduType in (0x01, 0x02):
        body = _spacePadded(body)
    if pduType == 0x02:
        body = _lenientUserItems(body, [])
    decoded = pduClass()
    try:
        decoded.decode(bytes((pduType, 0)) + len(body).to_bytes(4, "big") + body)
    except Exception as e:
        raise PDUError(f"undecodable {pduClass.__name__}: {e}") from e
    return decoded


def _peerMaxPDULength(items):
    """The peer's maximum PDU length (0: unlimited), or None when it is too
    small to send with (every PDU carries a 6-byte PDV header; DCMTK never
    offers less than 4096)."""
    maxLength = items.get(MaximumLengthNotification)
    peerMax = maxLength[0].maximum_length_received if maxLength else 0
    return None if 0 < peerMax < SMALLEST_MAX_PDU_LENGTH else peerMax


def negotiate(body, policy):
    """Negotiate the A-ASSOCIATE-RQ whose PDU body (after the 6-byte header)
    is ``body``. Returns an ``Association`` (with ``acPDU`` to send) or raises
    ``AssociationRejected`` / ``PDUError``.

    A sender repeats the same request for every association it opens, and
    decoding one (storescu proposes 112 contexts) takes pynetdicom about
    18 ms: the last ``policy.rememberAccepted`` accepted requests of up to
    ``policy.rememberLargest`` bytes are answered from memory."""
    key = bytes(body)
    known = policy.accepted.get(key)
    if known is None:
        known = _negotiate(key, policy)
        if len(key) <= policy.rememberLargest:
            if len(policy.accepted) >= policy.rememberAccepted:
                del policy.accepted[next(iter(policy.accepted))]  # the oldest
            policy.accepted[key] = known
    return replace(known, contexts=dict(known.contexts), rolesAsSCU=set(known.rolesAsSCU))


def _negotiate(body, policy):
    """``negotiate`` itself, for ``body`` as bytes."""
    notes = []
    screened, ids = _screened(body, policy, notes)
    rq = _decodePDU(A_ASSOCIATE_RQ, 0x01, screened)
    try:
        primitive = rq.to_primitive()
        calling = rq.calling_ae_title.strip()
        called = rq.called_ae_title.strip()
    except Exception as e:
        raise PDUError(f"undecodable A-ASSOCIATE-RQ: {e}") from e
    if not rq.protocol_version & 1:
        raise AssociationRejected(f"protocol version {rq.protocol_version} not supported",
                                  REJECTED_PERMANENT, SOURCE_ACSE, ACSE_PROTOCOL_VERSION)
    if primitive.application_context_name != APPLICATION_CONTEXT:
        raise AssociationRejected(
            f"application context {primitive.application_context_name} not supported",
            REJECTED_PERMANENT, SOURCE_USER, USER_APPLICATION_CONTEXT)
    compression = splitCalledAE(called)[1]

    items = _userItems(primitive.user_information or [])
    peerMax = _peerMaxPDULength(items)
    if peerMax is None:
        raise AssociationRejected(f"maximum PDU length below {SMALLEST_MAX_PDU_LENGTH} bytes",
                                  REJECTED_PERMANENT, SOURCE_USER, USER_NO_REASON)
    implementationUID = items.get(ImplementationClassUIDNotification)
    implementationVersion = items.get(ImplementationVersionNameNotification)
    proposedRoles = {r.sop_class_uid: (r.scu_role, r.scp_role)
                     for r in items.get(SCP_SCU_RoleSelectionNegotiation, [])}

    proposedContexts = primitive.presentation_context_definition_list
    if not proposedContexts:
        raise AssociationRejected("no presentation context proposed", REJECTED_PERMANENT, SOURCE_USER,
                                  USER_NO_REASON)
    results = []
    contexts = {}
    rolesAsSCU = set()
    peerNotSCU = set()
    replyRoles = {}
    for rqContext in proposedContexts:
        contextId = _proposedId(ids, rqContext.context_id)
        if rqContext.abstract_syntax is None:
            raise PDUError(f"presentation context {contextId} without an abstract syntax")
        result = PresentationContext()
        result.context_id = rqContext.context_id
        result.abstract_syntax = rqContext.abstract_syntax
        abstract = str(rqContext.abstract_syntax)
        proposed = [str(ts) for ts in rqContext.transfer_syntax]
        taken = [ts for ts in proposed if policy.takesSyntax(ts)]
        chosen = taken[0] if taken else None
        if abstract not in policy.abstractSyntaxes:
            result.result = ABSTRACT_SYNTAX_NOT_SUPPORTED
        elif chosen is None:
            result.result = TRANSFER_SYNTAXES_NOT_SUPPORTED
        else:
            scu, scp = proposedRoles.get(abstract, (True, False))
            acceptScp = bool(scp) and policy.abstractSyntaxes[abstract]
            if not scu and not acceptScp:  # neither side could use it (PS3.7 D.3.3.4)
                result.result = USER_REJECTION
            else:
                result.result = ACCEPTANCE
                chosen = _chosen(taken, not scu, abstract)
                contexts[contextId] = (abstract, chosen)
                if abstract in proposedRoles:
                    replyRoles[abstract] = (bool(scu), acceptScp)
                if acceptScp:
                    rolesAsSCU.add(abstract)
                if not scu:
                    peerNotSCU.add(abstract)
        result.transfer_syntax = [chosen or (proposed[0] if proposed else "1.2.840.10008.1.2")]
        results.append(result)

    asyncWindow = items.get(AsynchronousOperationsWindowNegotiation)
    invoked = performed = 1
    ac = A_ASSOCIATE()
    ac.application_context_name = APPLICATION_CONTEXT
    ac.calling_ae_title = rq.calling_ae_title
    ac.called_ae_title = rq.called_ae_title
    ac.result = 0
    ac.presentation_context_definition_results_list = results
    userInfo = _ourUserItems(policy.maxPDULength)
    if asyncWindow:
        window = asyncWindow[0]
        invoked = min(window.maximum_number_operations_invoked or MAX_ASYNC_OPERATIONS, MAX_ASYNC_OPERATIONS)
        performed = min(window.maximum_number_operations_performed or MAX_ASYNC_OPERATIONS,
                        MAX_ASYNC_OPERATIONS)
        reply = AsynchronousOperationsWindowNegotiation()
        reply.maximum_number_operations_invoked = invoked
        reply.maximum_number_operations_performed = performed
        userInfo.append(reply)
    userInfo += _roleItems(replyRoles)
    ac.user_information = userInfo
    acPDU = A_ASSOCIATE_AC()
    acPDU.from_primitive(ac)

    return Association(
        callingAE=calling, calledAE=called, compression=compression,
        peerMaxPDULength=peerMax,
        peerImplementationClassUID=_firstText(implementationUID, "implementation_class_uid"),
        peerImplementationVersion=_firstText(implementationVersion, "implementation_version_name"),
        contexts=contexts, rolesAsSCU=rolesAsSCU, peerNotSCU=frozenset(peerNotSCU),
        maxOperationsInvoked=invoked, maxOperationsPerformed=performed,
        acPDU=policy.titleStyle.written(_answeredAsProposed(acPDU.encode(), ids)), notes=tuple(notes))


def _proposedId(ids, contextId):
    """The ID the requestor gave the context ``_screened`` numbered ``contextId``."""
    return ids[(contextId - 1) // 2]


def _answeredAsProposed(ac, ids):
    """An encoded A-ASSOCIATE-AC with the presentation context IDs the
    requestor proposed, where ``_screened`` numbered them 1, 3, 5 ..."""
    answered = bytearray(ac)
    position = AC_ITEMS
    for itemType, item in _items(ac, AC_ITEMS, "the A-ASSOCIATE-AC"):
        if itemType == PRESENTATION_CONTEXT_RESULT:
            answered[position + 4] = _proposedId(ids, item[4])
        position += len(item)
    return bytes(answered)


# -- the requestor's side ----------------------------------------------------

class AssociationRefused(Exception):
    """The peer answered our A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ."""

    REASONS = {
        (SOURCE_USER, USER_NO_REASON): "no reason given",
        (SOURCE_USER, USER_APPLICATION_CONTEXT): "application context name not supported",
        (SOURCE_USER, USER_CALLING_AE): "calling AE title not recognized",
        (SOURCE_USER, USER_CALLED_AE): "called AE title not recognized",
        (SOURCE_ACSE, 1): "no reason given (ACSE)",
        (SOURCE_ACSE, ACSE_PROTOCOL_VERSION): "protocol version not supported",
        (SOURCE_PRESENTATION, 1): "temporary congestion",
        (SOURCE_PRESENTATION, PRESENTATION_LOCAL_LIMIT): "local limit exceeded",
    }

    def __init__(self, result, source, reason):
        self.result, self.source, self.reason = result, source, reason
        kind = "permanently" if result == REJECTED_PERMANENT else "transiently"
        text = self.REASONS.get((source, reason), f"source {source}, reason {reason}")
        super().__init__(f"association rejected {kind}: {text}")


def requestPDU(callingAE, calledAE, contexts, maxPDULength, roles=None, titleStyle=PLAIN_TITLES):
    """Our A-ASSOCIATE-RQ: ``contexts`` is ``{contextId: (abstract, [transfer
    syntaxes])}`` (odd ids), ``roles`` ``{sopClass: (scu, scp)}``, the AE
    titles written in ``titleStyle``."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = callingAE
    primitive.called_ae_title = titleStyle.calledAE(calledAE)
    proposed = []
    for contextId, (abstract, syntaxes) in contexts.items():
        context = PresentationContext()
        context.context_id = contextId
        context.abstract_syntax = abstract
        for syntax in syntaxes:
            context.add_transfer_syntax(syntax)
        proposed.append(context)
    primitive.presentation_context_definition_list = proposed
    primitive.user_information = _ourUserItems(maxPDULength) + _roleItems(roles or {})
    rq = A_ASSOCIATE_RQ()
    rq.from_primitive(primitive)
    return titleStyle.written(rq.encode())


def refusal(body):
    """The ``AssociationRefused`` an A-ASSOCIATE-RJ body stands for."""
    rj = _decodePDU(A_ASSOCIATE_RJ, 0x03, body)
    return AssociationRefused(rj.result, rj.source, rj.reason_diagnostic)


def accepted(body, callingAE, calledAE, contexts):
    """The ``Association`` an A-ASSOCIATE-AC body grants for our request of
    ``contexts`` (as given to ``requestPDU``)."""
    ac = _decodePDU(A_ASSOCIATE_AC, 0x02, body)
    try:
        primitive = ac.to_primitive()
    except Exception as e:
        raise PDUError(f"undecodable A-ASSOCIATE-AC: {e}") from e
    granted = {}
    for result in primitive.presentation_context_definition_results_list:
        if result.result == ACCEPTANCE and result.context_id in contexts and result.transfer_syntax:
            granted[result.context_id] = (contexts[result.context_id][0], str(result.transfer_syntax[0]))
    items = _userItems(primitive.user_information or [])
    peerMax = _peerMaxPDULength(items)
    if peerMax is None:
        raise PDUError(f"A-ASSOCIATE-AC with a maximum PDU length below {SMALLEST_MAX_PDU_LENGTH} bytes")
    window = items.get(AsynchronousOperationsWindowNegotiation)
    return Association(
        callingAE=callingAE, calledAE=calledAE, compression=None,
        peerMaxPDULength=peerMax,
        peerImplementationClassUID=_firstText(items.get(ImplementationClassUIDNotification),
                                              "implementation_class_uid"),
        peerImplementationVersion=_firstText(items.get(ImplementationVersionNameNotification),
                                             "implementation_version_name"),
        contexts=granted,
        rolesAsSCU=set(),
        maxOperationsInvoked=window[0].maximum_number_operations_invoked if window else 1,
        maxOperationsPerformed=window[0].maximum_number_operations_performed if window else 1)
