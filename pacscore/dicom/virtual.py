"""Conquest's virtual server (``VirtualServerFor0`` ... ``VirtualServerFor9``,
``VirtualPerSeries0`` ..., ``CacheVirtualData``): this archive stands in
front of other DICOM archives, named by AE title (acrnema.map gives their
addresses), and its clients see their data merged with its own.

C-FIND: the query goes to every listed archive as well, and their matches
are added to ours, one per entity (the unique key of the level; ours
first), with our AE title as the Retrieve AE Title.  C-MOVE and C-GET:
before any object is sent, each listed archive is asked (C-FINDs from the
retrieve's level, or the level below a key above it that the retrieve
names, such as a Patient ID, down to IMAGE, each with the unique keys
above it, as strictly hierarchical archives want) which of the objects it selects it
holds that are not here, and moves them here (a C-MOVE to our AE title, which
the other archive must know): by lists of SOP Instance UIDs or, for a
series more than ``VirtualPerSeriesN`` of whose objects are to be fetched
(0, the default: never), the whole series, decided per series, as
Conquest's VirtualServer2 does; but only a series none of whose objects
is here (nor on its way from another archive): a series C-MOVE also sends
those, and the store would replace what is here (a local correction) with
the other archive's copy.  Conquest moves such a series whole all the same;
pacs fetches only what it lacks.  Nor is a series moved whole for a
retrieve naming SOP Instance UIDs: it would bring objects never asked
for, left here for good with ``CacheVirtualData = 0``.  They are stored
and indexed like any object received, then sent with ours.  With ``CacheVirtualData = 0``
they are deleted again once the retrieve is over, unless another retrieve
under way holds them (``_hold``: it fetched them too, or its archive
listed them while here); pacs stopping waits for the deletes of the DICOM
retrieves it aborts (``stop``, at most ``QuitGracePeriod``), not for a web
answer under way (WADO-RS), whose objects stay; by default they stay,
so the archive works as a DICOM cache.  The C-MOVEs are registered in the
archive's ``OwnRetrieves`` (``pacscore.dicom.ownretrieves``) with the AE
title of the archive they fetch from: what they bring goes through the
import and export converters as any object received (Conquest's manual
leaves only ``preretrieve`` data out of them), but a ``forward`` to that
archive is not queued (it would send every fetched object straight back).

A query or retrieve may name the archives it goes to: Conquest's control
element (9999,0802) in its identifier, set by the ``virtualserver N`` and
``virtualservermask N`` converter commands (QueryConverter0,
RetrieveConverter0) or sent by the client, holds a mask whose bit N stands
for VirtualServerForN; the element is taken out before the request is
answered (``takeServerMask``).

The archives are asked at once, each wait bounded by
``VirtualServerTimeout`` (10 s): connecting, the A-ASSOCIATE-AC and each
C-FIND response; a C-MOVE's responses, which come one per object sent
(a large object on a slow link takes long), are waited for as any
association's, ``TCPIPTimeOut`` (300 s).  An object two of them hold and
this one does not is moved here from the first to list it; those it
failed to send are asked after, in turn, of the others that listed them
(``_askAgain``).  An archive that cannot be reached, or fails a request,
is logged and left out: clients get what the others and this one hold.
The index failing while the requestor waits (``_instancesOf``: bounded by
``SQLTimeOut``) is no failure of an archive: it fails the retrieve (A701).
The objects it listed that did not arrive (a C-MOVE that failed partway)
and no other sent are ``lost``: the retrieve counts them as failed
sub-operations, but for those its own query finds (stored after the
fetch looked); every object asked for is held (``Fetched.held``), and
deleted again (``CacheVirtualData = 0``) if one of our C-MOVEs stored it
(``_storing``), not a modality meanwhile, nor another store since (a
modality's, STOW-RS: ``_storedElsewhere``).  One that could not be reached, or whose
association failed (a timeout, an abort), is held off for
``FailHoldOff`` seconds (60), as the export queue holds a destination
off: the requests of that time leave it out at once, logged, instead of
each waiting on it again.

``,FIXKODAK`` after an AE title (Conquest 1.4.12) names an archive that
keeps Kodak's 8-digit Patient IDs: what goes to it (C-FIND and C-MOVE
identifiers) has 7-digit IDs given their leading zero, and its matches
lose it (Conquest's ``unfixkodak`` / ``fixkodak``).  The objects it
sends are stored as they come: a retrieve by Patient ID finds them here
only with ``FixKodak = 1``, which stores them with the IDs the clients
use.
"""

import copy
from collections import Counter
from typing import NamedTuple

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from twisted.internet import defer, threads
from twisted.logger import Logger

from pacscore.codecs.syntaxes import UNCOMPRESSED
from pacscore.dicom import commands
from pacscore.db.errors import DATABASE_FAILURES, IndexStopped, databaseMessage
from pacscore.db.query import COMPUTED_COUNTS, COMPUTED_LISTS
from pacscore.dicom.client import NodeUnreachable, associateNode
from pacscore.dicom.negotiation import PLAIN_TITLES, TitleStyle
from pacscore.dicom.paging import controlText
from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.dicom.models import (
    PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, STUDY_ROOT_FIND, STUDY_ROOT_MOVE, modelOf)
from pacscore.dicom.protocol import AssociationLost
from pacscore.holdoff import HoldOff
from pacscore.storage.patientids import kodakToNKI, nkiToKodak

SUCCESS = 0x0000
WARNING = 0xB000
MAX_SERVERS = 10
UIDS_PER_MOVE = 64
TIMEOUT = 10  # VirtualServerTimeout's default, seconds
SERVER_MASK = 0x99990802  # Conquest's control element: bit N asks VirtualServerForN

UNIQUE_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
               "IMAGE": "SOPInstanceUID"}
LEVELS = ("STUDY", "SERIES", "IMAGE")  # below PATIENT (Study Root starts here)


class VirtualServer(NamedTuple):
    """One archive this one stands in front of."""

    ae: str
    perSeriesAbove: int = 0  # fetch whole series past this many objects (VirtualPerSeriesN; 0: never)
    fixKodak: bool = False  # ",FIXKODAK": it keeps Kodak's Patient IDs
    number: int = 0  # N of VirtualServerForN


class VirtualServerError(Exception):
    """A listed archive could not answer."""


class Fetched(NamedTuple):
    """What a fetch brought here: the SOP Instance UIDs of the objects that
    arrived when it looked, of those listed that had not (one still being
    stored may come after: the retrieve counts as failed those its own
    query does not find), and of those to ``release`` once the retrieve is
    over: every one asked for, arrived or not (it deletes those our C-MOVEs
    stored)."""

    arrived: list
    lost: list
    held: tuple = ()


class RemoteImage(NamedTuple):
    patientID: str
    studyInstanceUID: str
    seriesInstanceUID: str
    sopInstanceUID: str


def serversFrom(ini, log):
    """The ``VirtualServer``s of ``VirtualServerFor0`` ... ``9`` in dicom.ini."""
    servers = []
    for n in range(MAX_SERVERS):
        value = ini.get(f"VirtualServerFor{n}", "").strip()
        if not value:
            continue
        ae, _, option = value.partition(",")
        option = option.strip()
        if option and option.upper() != "FIXKODAK":
            log.warn("VirtualServerFor{n} = {value}: {option} is not supported, ignored", n=n, value=value,
                     option=option)
        servers.append(VirtualServer(ae.strip(), max(ini.getint(f"VirtualPerSeries{n}", 0), 0),
                                     option.upper() == "FIXKODAK", n))
    return servers


def takeServerMask(identifier):
    """The mask a (9999,0802) control element of ``identifier`` (a
    Dataset) held, the element removed; None without one (or with one
    that holds no number, which is removed all the same)."""
    element = identifier.get(SERVER_MASK)
    if element is None:
        return None
    del identifier[SERVER_MASK]
    try:
        return int(controlText(element))
    except ValueError:
        return None


def _rootClasses(sopClassUID):
    """The (FIND, MOVE) SOP classes to ask a listed archive with, for a
    request on ``sopClassUID``: Study Root for Study Root, else Patient Root."""
    model = modelOf(sopClassUID)
    if model is not None and model.name.startswith("Study Root"):
        return STUDY_ROOT_FIND, STUDY_ROOT_MOVE
    return PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE


def _text(dataset, keyword):
    return str(dataset.get(keyword, "") or "").strip()


def _named(value):
    """Whether a key of ``fetch`` (a value or a list) holds a value."""
    return any(value) if isinstance(value, list) else bool(value)


def _values(element):
    """The values of an element as stripped text, none when it is empty."""
    value = element.value
    values = value if isinstance(value, MultiValue) else [] if value in (None, "") else [value]
    return [str(part).strip() for part in values if str(part).strip()]


def addComputed(ours, theirs):
    """Give our match ``ours`` of an entity another archive matched too
    (``theirs``; Datasets) what that archive holds of it and we may not:
    the larger of each count (NumberOf...Related...) and the union of
    ModalitiesInStudy and SOPClassesInStudy, of those ``ours`` answers.
    Whether ``ours`` changed."""
    changed = False
    for tag in (COMPUTED_COUNTS | COMPUTED_LISTS) & set(ours.keys()) & set(theirs.keys()):
        mine, other = _values(ours[tag]), _values(theirs[tag])
        if tag in COMPUTED_LISTS:
            value = sorted(set(mine) | set(other))
        else:
            numbers = [int(text) for text in mine + other if text.isdigit()]
            value = [str(max(numbers))] if numbers else mine
        if value != mine:
            ours[tag].value = value
            changed = True
    return changed


def _single(value):
    """A key the match did not echo: the request's, unless it was a list."""
    return value if isinstance(value, str) else ""


class VirtualServers:
    """See the module docstring.  ``actions`` (``LocalActions``) deletes
    fetched objects when ``cache`` is off."""

    log = Logger()

    def __init__(self, servers, acrNemaMap, aeTitle, reactor, index, query, actions, cache=True,
                 timeout=TIMEOUT, failHoldOff=60, endpointFor=None, titleStyle=PLAIN_TITLES, dimseTimeout=300,
                 ownRetrieves=None):
        self.servers = list(servers)
        self.acrNemaMap = acrNemaMap
        self.aeTitle = aeTitle
        self.reactor = reactor
        self.index = index
        self.query = query
        self.actions = actions
        self.cache = cache
        self.timeout = timeout  # VirtualServerTimeout: connecting, the A-ASSOCIATE-AC, each C-FIND response
        self.dimseTimeout = dimseTimeout  # TCPIPTimeOut: each C-MOVE response (None: no limit)
        self.heldOff = HoldOff(reactor, failHoldOff)  # AE titles of the archives that failed (FailHoldOff)
        self.endpointFor = endpointFor  # (host, port) -> client endpoint; None: TCP
        self.titleStyle = titleStyle  # PadAEWithZeros, SendUpperCaseAE (negotiation.TitleStyle)
        # the archive's OwnRetrieves: our C-MOVEs register in it, so that what they bring is not forwarded back
        self.ownRetrieves = ownRetrieves
        if ownRetrieves is not None and not cache:
            ownRetrieves.hearOthers(self._storedElsewhere)
        self._holders = Counter()  # SOP Instance UID fetched here -> retrieves under way holding it (cache off)
        self._brought = set()  # the SOP Instance UIDs held (or _late) that our C-MOVEs stored here: those deleted
        self._arriving = Counter()  # SOP Instance UID held -> C-STOREs of our C-MOVEs storing it under way
        self._late = set()  # those released while stored (ours, another store): decided as those end (``_settled``)
        self._others = Counter()  # SOP Instance UID held (or _late) -> other stores of it under way (_storedElsewhere)
        self._kept = set()  # those held that another store stored: release leaves them, whoever's copy is last
        self._releasing = 0  # releases under way
        self._retrieves = 0  # DICOM retrieves under way (``retrieving``): pacs stopping aborts them
        self._idle = []  # Deferreds of stop, fired once no DICOM retrieve runs nor release

    @classmethod
    def fromConfiguration(cls, configuration, aeTitle, reactor, index, query, actions, ownRetrieves=None):
        """The virtual servers of dicom.ini, or None when none is listed."""
        ini = configuration.ini
        servers = serversFrom(ini, cls.log)
        if not servers:
            return None
        for server in servers:
            if configuration.acrNemaMap.lookup(server.ae) is None:
                cls.log.warn("VirtualServerFor: {ae} is not in acrnema.map: it will not be asked", ae=server.ae)
        return cls(servers, configuration.acrNemaMap, aeTitle, reactor, index, query, actions,
                   cache=ini.getint("CacheVirtualData", 1) != 0, timeout=ini.getint("VirtualServerTimeout", TIMEOUT),
                   failHoldOff=ini.getint("FailHoldOff", 60),
                   titleStyle=TitleStyle.fromIni(ini), dimseTimeout=configuration.tcpipTimeout,
                   ownRetrieves=ownRetrieves)

    async def _associate(self, server, contexts):
        node = self.acrNemaMap.lookup(server.ae)
        if node is None:
            raise VirtualServerError(f"{server.ae} is not in acrnema.map")
        protocol = await associateNode(self.reactor, node, self.aeTitle, contexts, self.timeout, self.dimseTimeout,
                                       self.endpointFor, self.titleStyle)
        return KodakPatientIDs(protocol) if server.fixKodak else protocol

    def _inThread(self, function, *args):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), function, *args)

    async def _find(self, protocol, sopClass, identifier):
        """The matches (Datasets) of one C-FIND on an open association;
        cancelled, it C-CANCELs it (``_cancelling``)."""
        status, matches = await _cancelling(protocol, sopClass, protocol.findMatches(
            sopClass, identifier, self._inThread, timeout=self.timeout))
        if status != SUCCESS:
            raise VirtualServerError(f"C-FIND ended with status 0x{status:04X}")
        return matches

    # -- C-FIND -----------------------------------------------------------

    def chosen(self, mask, callingAE=None):
        """The servers a request with (9999,0802) ``mask`` goes to (all when
        None), from ``callingAE``: never back to the archive that sent it
        (two archives that are each other's virtual server would forward
        each request to and fro).  AE titles compare as acrnema.map looks
        them up: without case."""
        callingAE = (callingAE or "").strip().upper()
        return [server for server in self.servers
                if (mask is None or mask >> server.number & 1) and server.ae.strip().upper() != callingAE]

    def _asked(self, mask, callingAE, request):
        """The servers ``chosen`` that are not held off; those that are are
        logged as left out of ``request``."""
        asked = []
        for server in self.chosen(mask, callingAE):
            remaining = self.heldOff.remaining(server.ae)
            if remaining:
                self.log.info("virtual server {ae}: left out of the {request}, held off for another {seconds:.0f} s "
                              "after it failed (FailHoldOff)", ae=server.ae, request=request, seconds=remaining)
            else:
                asked.append(server)
        return asked

    def _failed(self, server, error, leftOut):
        """Log that ``server`` failed with ``error`` (``leftOut`` says what
        the request goes without), holding it off when it could not be
        reached or its association failed."""
        unreachable = isinstance(error, (NodeUnreachable, AssociationLost))
        if unreachable:
            self.heldOff.hold(server.ae)
        self.log.warn("virtual server {ae}: {leftOut}: {error}{holding}", ae=server.ae, leftOut=leftOut,
                      error=str(error) or repr(error),
                      holding=f"; holding it off for {self.heldOff.seconds} s (FailHoldOff)" if unreachable else "")

    async def find(self, sopClass, identifier, mask=None, callingAE=None):
        """The matches of the listed archives (those of ``mask``, but not
        ``callingAE``: ``chosen``, nor those held off) for a C-FIND
        ``identifier`` (a Dataset) on ``sopClass``, asked at once, in their
        order, one per entity."""
        keyword = UNIQUE_KEYS.get(_text(identifier, "QueryRetrieveLevel").upper())
        if keyword and keyword not in identifier:
            identifier = copy.deepcopy(identifier)  # the level's unique key tells their matches apart
            setattr(identifier, keyword, "")
        answers = await _together([self._findOn(server, sopClass, identifier)
                                   for server in self._asked(mask, callingAE, "C-FIND")])
        return [match for matches in answers for match in matches]

    async def _findOn(self, server, sopClass, identifier):
        """The matches of one archive; none when it fails (``_failed``)."""
        try:
            protocol = await self._associate(server, [(sopClass, list(UNCOMPRESSED))])
            return await _releasing(protocol, self._find(protocol, sopClass, identifier))
        except defer.CancelledError:
            raise
        except Exception as e:
            self._failed(server, e, "C-FIND failed, its matches are left out")
            return []

    def merge(self, local, remote, level, syntax, keep=None):
        """Our encoded matches ``local`` (with the computed keys of the
        ``remote`` matches of the same entity: ``addComputed``), then those
        of ``remote`` (Datasets) whose unique key is new, encoded in
        ``syntax`` with our AE title to retrieve from; ``keep(dataset)``
        (the result converter) may leave some out.  Decodes and encodes:
        call it in a worker."""
        keyword = UNIQUE_KEYS[level]
        merged = list(local)
        ours = {}  # unique key -> (position, decoded match)
        for n, match in enumerate(local):
            decoded = decodeDataset(match, syntax)
            ours.setdefault(_text(decoded, keyword), (n, decoded))
        seen = set(ours)
        for dataset in remote:
            key = _text(dataset, keyword)
            if key and key in ours:
                n, decoded = ours[key]
                if addComputed(decoded, dataset):
                    merged[n] = encodeDataset(decoded, syntax)
                continue
            if key and key in seen:
                continue
            seen.add(key)
            dataset.RetrieveAETitle = self.aeTitle
            if keep is None or keep(dataset):
                merged.append(encodeDataset(dataset, syntax))
        return merged

    # -- C-MOVE and C-GET -------------------------------------------------

    async def fetch(self, sopClass, identifier, mask=None, callingAE=None, onPending=None):
        """Move here what the listed archives (those of ``mask``, but not
        ``callingAE``: ``chosen``, nor those held off) hold of a retrieve ``identifier`` (a
        Dataset) on ``sopClass`` and this archive does not: their
        ``Fetched``, asked at once.  ``onPending(count)`` hears of each of
        their pending C-MOVE responses, ``count`` the objects being fetched.
        Cancelled, the C-MOVEs under way are C-CANCELled and what arrived is
        released."""
        findClass, moveClass = _rootClasses(sopClass)
        level = _text(identifier, "QueryRetrieveLevel").upper()
        keys = {}
        for keyword in UNIQUE_KEYS.values():
            value = identifier.get(keyword, "")  # a list of UIDs stays a list
            keys[keyword] = list(value) if isinstance(value, MultiValue) else str(value or "").strip()
        fetching = []  # the SOP Instance UIDs of the objects asked for, to release
        adopted = {}  # those here that another retrieve under way fetched, to release too (a set, in order)
        asked = self._asked(mask, callingAE, "retrieve")
        try:
            results = await _together([self._fetchOn(server, findClass, moveClass, fetching, onPending,
                                                     self._listed(findClass, level, keys, fetching, adopted))
                                       for server in asked])
            fetched = await self._askAgain(asked, results, findClass, moveClass, fetching, onPending)
        except defer.CancelledError:
            await self.release([*fetching, *adopted])
            raise
        except DATABASE_FAILURES:
            defer.ensureDeferred(self.release([*fetching, *adopted]))  # the requestor is answered (A701) at once
            raise
        return fetched._replace(held=(*fetching, *adopted))

    async def _askAgain(self, asked, results, findClass, moveClass, fetching, onPending):
        """The ``Fetched`` of a retrieve whose archives ``asked`` fetched
        ``results`` (``_fetchFrom``'s) at once, the objects one of them
        failed to send (a failure status, a timeout, an abort) asked after,
        in turn, of the others that listed them and sent all they had to."""
        arrived = [uid for fetched, _ in results for uid in fetched.arrived]
        lost = {uid: None for fetched, _ in results for uid in fetched.lost}  # a set, in order
        for server, (fetched, others) in zip(asked, results):
            images = [image for image in others if image.sopInstanceUID in lost]
            if images and not fetched.lost:
                again, _ = await self._fetchOn(server, findClass, moveClass, fetching, onPending, _given(images))
                arrived += again.arrived
                for uid in again.arrived:
                    del lost[uid]
        return Fetched(arrived, list(lost))

    async def _remoteImages(self, protocol, findClass, level, keys):
        """The ``RemoteImage``s an archive holds of a retrieve at ``level``
        with ``keys`` (unique keys by keyword), asked level by level down to
        IMAGE, each query with the unique keys of every level above it (what
        strictly hierarchical archives require).  The walk starts below the
        lowest level above ``level`` that ``keys`` names (a Patient ID in
        Study Root too, which then goes with the STUDY query), else at
        ``level``: a retrieve named by keys above its level (a STUDY or
        SERIES move by Patient ID alone) selects the same objects there as
        here."""
        levels = ("PATIENT",) + LEVELS if findClass == PATIENT_ROOT_FIND else LEVELS
        if level not in levels:
            raise VirtualServerError(f"Query/Retrieve Level {level!r}")
        allLevels = ("PATIENT",) + LEVELS
        named = [at for at in allLevels[:allLevels.index(level)] if _named(keys.get(UNIQUE_KEYS[at]))]
        start = levels.index(allLevels[allLevels.index(named[-1]) + 1]) if named else levels.index(level)
        found = [keys]
        for depth in range(start, len(levels)):
            below = []
            for known in found:
                request = Dataset()
                request.QueryRetrieveLevel = levels[depth]
                if levels[depth] == "STUDY" and findClass == STUDY_ROOT_FIND and _named(known.get("PatientID")):
                    request.PatientID = known["PatientID"]
                for at in levels[:depth + 1]:
                    setattr(request, UNIQUE_KEYS[at], known.get(UNIQUE_KEYS[at], ""))
                for match in await self._find(protocol, findClass, request):
                    below.append({**known, **{UNIQUE_KEYS[at]: _text(match, UNIQUE_KEYS[at]) or _single(
                        known.get(UNIQUE_KEYS[at], "")) for at in levels[:depth + 1]}})
            found = below
        return [RemoteImage(*(known.get(UNIQUE_KEYS[at], "") for at in ("PATIENT",) + LEVELS)) for known in found]

    async def _fetchOn(self, server, findClass, moveClass, fetching, onPending, choose):
        """``_fetchFrom``; nothing when the archive fails (``_failed``).
        The index failing (down, or no answer within ``SQLTimeOut``) is no
        failure of the archive: it fails the retrieve."""
        try:
            return await self._fetchFrom(server, findClass, moveClass, fetching, onPending, choose)
        except (defer.CancelledError, *DATABASE_FAILURES):
            raise
        except Exception as e:
            self._failed(server, e, "its objects are left out of the retrieve")
            return Fetched([], []), []

    async def _fetchFrom(self, server, findClass, moveClass, fetching, onPending, choose):
        """``(Fetched, others)`` of one archive: what arrived of the objects
        ``choose(protocol)`` gave it to send (``_listed``, ``_given``),
        even when one of its C-MOVEs failed (the objects of the C-MOVEs
        before, and those of the failed one that came first, are here all
        the same, and ``release`` must see them); ``others``, the
        ``RemoteImage``s it listed that another archive was to send."""
        protocol = await self._associate(server, [(findClass, list(UNCOMPRESSED)),
                                                     (moveClass, list(UNCOMPRESSED))])
        missing, others, error = await _releasing(protocol, self._bring(protocol, findClass, moveClass, choose,
                                                                        server, fetching, onPending))
        uids = [image.sopInstanceUID for image in missing]
        here = {instance.sopInstanceUID for instance in await self._instancesOf(uids)}
        fetched = Fetched([uid for uid in uids if uid in here], [uid for uid in uids if uid not in here])
        if fetched.lost:
            self.log.warn("virtual server {ae}: {count} of {total} object(s) fetched, the others are left out of "
                          "the retrieve unless another archive that listed them sends them: {error}", ae=server.ae,
                          count=len(fetched.arrived), total=len(uids), error=error or "they did not arrive")
        elif uids:
            self.log.info("virtual server {ae}: {count} object(s) fetched", ae=server.ae, count=len(uids))
        return fetched, others

    def _listed(self, findClass, level, keys, fetching, adopted):
        """A ``choose`` of ``_fetchFrom`` for the first pass of a retrieve:
        ``(missing, others, whole)``, the ``RemoteImage``s of the retrieve
        the archive holds and this one does not, those that no other archive
        moves here yet (``fetching``, which they are added to) and the
        others; ``whole``, the series (``RemoteImage[:3]``) that may be moved
        whole (``_allMissing``): none when the retrieve names SOP Instance
        UIDs, which select part of a series (a series C-MOVE would bring the
        rest, never asked for, which ``release`` would not delete).  Those
        it asks for and those here that another retrieve under way fetched
        or released while stores of them were under way (``_late``; added to
        ``adopted``) are held (``_hold``), each once per retrieve:
        one another archive of this retrieve asked for (in ``fetching``,
        here since) is not held again."""
        async def choose(protocol):
            images = {image.sopInstanceUID: image
                      for image in await self._remoteImages(protocol, findClass, level, keys) if image.sopInstanceUID}
            known = {instance.sopInstanceUID for instance in await self._instancesOf(list(images))}
            taken = set(fetching)
            missing = [image for uid, image in images.items() if uid not in known and uid not in taken]
            asking = [image.sopInstanceUID for image in missing]
            fetching.extend(asking)
            adopting = [uid for uid in images if uid in known and (uid in self._holders or uid in self._late)
                        and uid not in taken and uid not in adopted]  # held once per retrieve
            adopted.update(dict.fromkeys(adopting))
            self._hold(asking + adopting)
            others = [image for uid, image in images.items() if uid not in known and uid in taken]
            return missing, others, frozenset() if selective else _allMissing(images.values(), missing)
        selective = _named(keys.get(UNIQUE_KEYS["IMAGE"]))  # its SOP Instance UIDs: part of a series
        return choose

    async def _bring(self, protocol, findClass, moveClass, choose, server, fetching, onPending):
        """``(missing, others, error)``: the ``RemoteImage``s
        ``choose(protocol)`` gives, moved here, those it leaves to other
        archives, and the error of the C-MOVE that failed (None)."""
        missing, others, whole = await choose(protocol)
        progress = None if onPending is None else lambda command: onPending(len(fetching))
        try:
            for identifier in self._moves(server, findClass, missing, whole):
                await self._move(protocol, moveClass, identifier, progress, server.ae)
        except defer.CancelledError:
            raise
        except Exception as e:
            return missing, others, e
        return missing, others, None

    def _moves(self, server, findClass, missing, whole):
        """The C-MOVE identifiers that bring ``missing`` here: per series,
        a SERIES-level one when the series is one of ``whole`` and more than
        ``VirtualPerSeriesN`` of its objects are missing, else lists of
        UIDs."""
        bySeries = {}
        for image in missing:
            bySeries.setdefault(image[:3], []).append(image.sopInstanceUID)
        for (patientID, study, series), uids in bySeries.items():
            perSeries = (patientID, study, series) in whole and 0 < server.perSeriesAbove < len(uids)
            chunks = [None] if perSeries else [uids[n:n + UIDS_PER_MOVE]
                                                      for n in range(0, len(uids), UIDS_PER_MOVE)]
            for chunk in chunks:
                identifier = Dataset()
                identifier.QueryRetrieveLevel = "SERIES" if chunk is None else "IMAGE"
                if findClass == PATIENT_ROOT_FIND:
                    identifier.PatientID = patientID
                identifier.StudyInstanceUID = study
                identifier.SeriesInstanceUID = series
                if chunk is not None:
                    identifier.SOPInstanceUID = chunk
                yield identifier

    async def _move(self, protocol, moveClass, identifier, onPending, source):
        own = self.ownRetrieves
        messageID = None if own is None else own.begin(source, None if self.cache else self._storing)
        try:
            command, _ = await _cancelling(protocol, moveClass, protocol.move(moveClass, identifier, self.aeTitle,
                                                                              onPending, messageID))
        finally:
            if own is not None:
                own.end(messageID)
        status = command.get(commands.STATUS)
        if status not in (SUCCESS, WARNING):
            failed = command.get(commands.FAILED_SUBOPERATIONS, "?")
            raise VirtualServerError(f"C-MOVE to {self.aeTitle} ended with status 0x{status:04X} "
                                     f"({failed} sub-operations failed)")

    def _storing(self, uid):
        """A C-STORE of one of our C-MOVEs comes to store the object ``uid``
        here (``OwnRetrieves.storing``): ``release`` deletes it if a retrieve
        holds it (CacheVirtualData = 0), once stored; one released while its
        store is under way is decided as the stores of it end (``_settled``).
        Returns what hears of that end (``ended(stored)``), None for an
        object not held."""
        if uid not in self._holders:
            return None
        self._arriving[uid] += 1

        def ended(stored):
            self._arriving[uid] -= 1
            if self._arriving[uid] > 0:
                return
            del self._arriving[uid]
            if stored and uid not in self._kept and (uid in self._holders or uid in self._late):
                self._brought.add(uid)
            self._settled(uid)
        return ended

    def _storedElsewhere(self, uid):
        """Another store than our C-MOVEs' (a modality's C-STORE, STOW-RS)
        comes to store the object ``uid`` (``OwnRetrieves.hearOthers``):
        one a retrieve holds is no longer ours once that store stored it
        (``_kept``: ``release`` leaves it, whoever's copy is stored last),
        nor deleted while that store is under way; one released meanwhile
        (``_late``) stays if that store stores it, a line says so, and is
        deleted as the release would have if it is refused (``_settled``).
        Returns what hears of that end (``ended(stored)``), None for an
        object neither held nor released while being stored."""
        if uid not in self._holders and uid not in self._late:
            return None
        self._others[uid] += 1

        def ended(stored):
            self._others[uid] -= 1
            if self._others[uid] <= 0:
                del self._others[uid]
            if stored:
                self._brought.discard(uid)
                if uid in self._holders:
                    self._kept.add(uid)
                elif uid in self._late:
                    self._late.discard(uid)
                    self._storedHere(1)
            self._settled(uid)
        return ended

    def _settled(self, uid):
        """A store of the object ``uid`` ended: one released while stores
        of it were under way (``_late``) is decided once none is: deleted if
        one of our C-MOVEs stored it and no other store since (``_brought``),
        unless a retrieve holds it again (its release decides)."""
        if uid not in self._late or uid in self._arriving or uid in self._others:
            return
        self._late.discard(uid)
        if uid in self._holders:
            return
        if uid in self._brought:
            self._brought.discard(uid)
            defer.ensureDeferred(self._waitedFor(self._delete([uid], {uid})))

    def _hold(self, uids):
        """One more retrieve under way holds the objects ``uids`` (with
        CacheVirtualData = 0): ``release`` deletes an object once none does."""
        if not self.cache:
            self._holders.update(uids)

    async def retrieving(self, work):
        """``await work``: a DICOM retrieve (C-MOVE, C-GET), which releases
        what it holds as it ends, and which pacs stopping ends (its
        association aborted): ``stop`` waits for it."""
        self._retrieves += 1
        try:
            return await work
        finally:
            self._retrieves -= 1
            self._idleIfDone()

    def stop(self, timeout):
        """pacs stopping, its associations aborted (the DICOM retrieves under
        way end and release what they hold): fires once no DICOM retrieve
        runs (``retrieving``) nor release (CacheVirtualData = 0), the deletes
        done while the index still runs; after ``timeout`` seconds
        (QuitGracePeriod) the stop goes on, and a warning says how many
        stay.  The web answers under way (WADO-RS) are not ended by the
        stop: it does not wait for them, and what they hold stays, with a
        warning."""
        def late(failure):
            failure.trap(defer.TimeoutError)
            self.log.warn("{count} object(s) fetched from virtual servers are not deleted (CacheVirtualData = 0): "
                          "pacs stopped after {grace} s (QuitGracePeriod) with retrieves holding them under way",
                          count=len(self._holders), grace=timeout)

        def held(_):
            if self._holders:
                self.log.warn("{count} object(s) fetched from virtual servers are not deleted (CacheVirtualData = 0): "
                              "pacs stopped with web answers (WADO-RS) holding them under way",
                              count=len(self._holders))
        if not (self._retrieves or self._releasing):
            return defer.succeed(None).addCallback(held)
        idle = defer.Deferred()
        self._idle.append(idle)
        return idle.addTimeout(timeout, self.reactor).addCallbacks(held, late)

    async def release(self, fetched):
        """``_release``, which ``stop`` waits for."""
        await self._waitedFor(self._release(fetched))

    async def _waitedFor(self, deleting):
        """``await deleting`` (a release, a delete), which ``stop`` waits for."""
        self._releasing += 1
        try:
            await deleting
        finally:
            self._releasing -= 1
            self._idleIfDone()

    def _idleIfDone(self):
        """Fire the Deferreds of ``stop`` once no DICOM retrieve runs nor release."""
        if not self._retrieves and not self._releasing:
            idle, self._idle = self._idle, []
            for waiting in idle:
                if not waiting.called:
                    waiting.callback(None)

    async def _release(self, fetched):
        """A retrieve is over: delete the objects it held (``Fetched.held``:
        the SOP Instance UIDs asked for, and those another retrieve fetched)
        that no other retrieve under way holds and one of our C-MOVEs
        stored here (``_storing``: those that arrived late too), unless the
        fetched data is kept (CacheVirtualData).  One asked for that came by
        other means (a modality sent it meanwhile, before or after our C-MOVE
        stored it: ``_storedElsewhere``) stays; one still being stored (by
        ours or another store) is decided as those stores end (``_late``,
        ``_settled``)."""
        if self.cache or not fetched:
            return
        fetched = list(dict.fromkeys(fetched))
        self._holders.subtract(fetched)
        free = [uid for uid in fetched if self._holders[uid] <= 0]
        for uid in free:
            del self._holders[uid]
        if len(free) < len(fetched):
            self.log.info("{count} object(s) fetched from virtual servers kept while another retrieve sends them "
                          "(CacheVirtualData = 0): it deletes them", count=len(fetched) - len(free))
        late = {uid for uid in free if uid in self._arriving or uid in self._others} - self._kept
        self._late.update(late)  # another store's stored copy (_kept) is not ours to delete
        self._kept.difference_update(free)
        free = [uid for uid in free if uid not in late]
        brought = {uid for uid in free if uid in self._brought}
        self._brought.difference_update(free)
        if free:
            await self._delete(free, brought)

    async def _delete(self, free, brought):
        """Delete those of the objects ``free`` here that our C-MOVEs
        stored (``brought``); a line says how many others stay.  The index
        failing, or stopping (pacs stopping), they stay, with a warning: no
        record of them is kept for the next start to delete them."""
        try:
            instances = await self.index.runQuery(self.query.instancesByUID, free)  # none waits on it
            ours = [instance for instance in instances if instance.sopInstanceUID in brought]
            count = (await self.actions.removeInstances(ours)).removed if ours else 0
        except (IndexStopped, *DATABASE_FAILURES) as e:
            if brought:
                self.log.warn("{count} object(s) fetched from virtual servers are not deleted (CacheVirtualData = 0): "
                              "{error}", count=len(brought), error=e if isinstance(e, IndexStopped) else
                              f"the index database: {databaseMessage(e)}")
            return
        if len(ours) < len(instances):
            self._storedHere(len(instances) - len(ours))
        if ours:
            self.log.info("{count} object(s) fetched from virtual servers deleted (CacheVirtualData = 0)",
                          count=count)

    def _storedHere(self, count):
        """The line saying ``count`` objects asked for stay, stored here by other means."""
        self.log.info("{count} object(s) asked of virtual servers not deleted (CacheVirtualData = 0): they "
                      "were stored here by other means, not by their C-MOVEs", count=count)

    async def _instancesOf(self, uids):
        """The index's ``Instance``s of the SOP Instance UIDs ``uids``
        (``IndexQuery.instancesByUID``), for a requestor waiting: failed
        with ``IndexTimeout`` once the database gave nothing for
        ``SQLTimeOut`` (``queryForPeer``), as the retrieve's own query."""
        return await self.index.queryForPeer(self.query.instancesByUID, uids)


def _withPatientID(identifier, rule):
    """``identifier`` (a Dataset) with its Patient ID rewritten by ``rule``
    (a copy: the caller's stays as it is)."""
    patientID = identifier.get("PatientID")
    if not isinstance(patientID, str) or rule(patientID) == patientID:
        return identifier
    identifier = copy.deepcopy(identifier)
    identifier.PatientID = rule(patientID)
    return identifier


class KodakPatientIDs:
    """A client association to a ``,FIXKODAK`` archive: Patient IDs go to
    it in Kodak's form and its matches come back in NKI's."""

    def __init__(self, protocol):
        self.protocol = protocol

    def __getattr__(self, name):  # release, abortAssociation ...
        return getattr(self.protocol, name)

    def findMatches(self, sopClassUID, identifier, inThread, timeout=None):
        return self.protocol.findMatches(sopClassUID, _withPatientID(identifier, nkiToKodak), inThread,
                                         lambda match: _withPatientID(match, kodakToNKI), timeout=timeout)

    def move(self, sopClassUID, identifier, destination, onPending=None, messageID=None):
        return self.protocol.move(sopClassUID, _withPatientID(identifier, nkiToKodak), destination, onPending,
                                  messageID)


def _allMissing(listed, missing):
    """The series (``RemoteImage[:3]``) of the ``RemoteImage``s ``missing``
    none of whose ``listed`` ones is left out of it (here, or moved here by
    another archive): those a SERIES-level C-MOVE may bring whole (for the
    others it would also send what is here, replacing it)."""
    uids = {image.sopInstanceUID for image in missing}
    return ({image[:3] for image in missing}
            - {image[:3] for image in listed if image.sopInstanceUID not in uids})


def _given(images):
    """A ``choose`` of ``VirtualServers._fetchFrom`` for the objects
    another archive failed to send: ``images`` by lists of UIDs, none left
    to others."""
    async def choose(protocol):
        return images, [], frozenset()
    return choose


async def _together(work):
    """The results of the coroutines ``work``, run at once, in their
    order; cancelled, every one of them is, and so are the others when
    one fails (the index failing a retrieve: nothing more is fetched)."""
    running = [defer.ensureDeferred(coroutine) for coroutine in work]
    try:
        return await defer.gatherResults(running, consumeErrors=True)
    except defer.FirstError as e:
        for other in running:
            other.cancel()
        e.subFailure.raiseException()


async def _cancelling(protocol, sopClass, request):
    """What ``request`` (the Deferred of our last C-FIND/C-MOVE on
    ``sopClass``) fires with; cancelled, the archive is sent a C-CANCEL,
    so that it stops too (PS3.7, the C-CANCEL service)."""
    try:
        return await request
    except defer.CancelledError:
        protocol.cancelLast(sopClass)
        raise


async def _releasing(protocol, work):
    """What ``work`` (a coroutine using ``protocol``) returns, the
    association released after it; cancelled (C-CANCEL sent), it is
    released without waiting, so that our requestor is answered at once."""
    try:
        result = await work
    except defer.CancelledError:
        defer.ensureDeferred(_close(protocol))
        raise
    except BaseException:
        await _close(protocol)
        raise
    await _close(protocol)
    return result


async def _close(protocol):
    try:
        await protocol.release()
    except Exception:
        protocol.abortAssociation()
