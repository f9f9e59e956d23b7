"""The control commands that change stored objects (manual appendix 6,
"Modification of dicom objects"): ``modifypatid``, ``copypatid`` (dgate
-fk), ``anonymize``, ``modifyimage``, ``modifystudy``, ``modifyseries``,
``mergestudy``, ``mergestudyfile``,
``mergeseries`` and ``mergeseriesfile``.

Each reads stored objects (a file named as ``stored`` says, or the objects
of the studies or series to merge), changes the data set in the I/O pool
(``pacscore.control.changes``), stores the result through the ObjectStore
(file naming, index, mirror copy; not through the import and export
converters, as Conquest's own rewrites are not, nor WorkListMode and
FixPhilips/FixKodak, which would undo the change) and only then removes the
original, file and rows, so a failure never loses it; ``copypatid`` keeps
it.  The changes of one SOP instance run one at a time, each from the row
the index has for it then, so two at once never make it two objects.  As in Conquest, a new Patient ID and a merge give the objects new
UIDs from the UID map:

- ``modifypatid:patid,file`` / ``copypatid:patid,file``: the Patient ID,
  and new Study, Series and SOP Instance UIDs made for that patient (so
  changing it back later makes other new objects, and copies of one file
  for two patients are two objects);
- ``anonymize:patid,file``: ``anonymize_script.cq`` (converter lines,
  each in UTF-8 or else cp1252: ``readTextLines``; Conquest's comment
  lines skipped, as ``call`` skips them: ``isComment``) or else
  ``anonymize_script.lua`` of the configuration folder, when there is
  one, then Patient ID and Name ``patid``, the Basic Profile of WADO's
  ``anonymize=yes`` applied to what the script did not set, Patient
  Identity Removed YES, and new UIDs;
- ``modifyimage:file,script``: the converter lines ``script`` (``set
  0010,0010 to "X"`` ..., or ``to 'X'`` as Conquest takes it); UIDs change
  only if the script changes them; ``modifystudy:patid,studyuid,script``
  and ``modifyseries:patid,seriesuid,script`` (patid may be empty) apply
  it to each object of a study or series, skipping one deleted meanwhile;
- ``mergestudy:A,B,...``: the objects of studies B ... join study A (new
  Series and SOP Instance UIDs, A's study attributes; objects of A that
  reference them are stored again with their new UIDs), all of one patient; ``mergeseries:A,B,...``
  likewise for series of one study (new SOP Instance UIDs).  The merge is
  recorded in UIDMODS (B -> A), so ``mergestudyfile:file`` /
  ``mergeseriesfile:file`` can bring in one object of B stored later.
"""

import dataclasses
import os

from twisted.internet import task
from twisted.logger import Logger

from pacscore.config.errors import ConfigError
from pacscore.config.textfile import readTextLines
from pacscore.control.arguments import AsyncControlCommand, fields
from pacscore.control.attach import sampleOf, storedSample
from pacscore.control.changes import anonymized, changing, mergedInto, newPatient, referencesRenewed, scripted
from pacscore.control.context import CommandError
from pacscore.control.data import readObject, storeObject
from pacscore.control.maintenance import checkDevicePresent, device
from pacscore.control.stored import exactValue, fileInstances, storedFile, storedName, uidValue
from pacscore.converters.context import ConverterSyntaxError
from pacscore.converters.flow import isComment
from pacscore.converters.script import parseScript
from pacscore.db.query import PATIENT_ID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, QueryKey

ANONYMIZE_SCRIPTS = ("anonymize_script.cq", "anonymize_script.lua")
PROGRESS_EVERY = 100
SETTLE_TRIES, SETTLE_DELAY = 30, 0.1  # a missing file's row is given 3 s to go (a delete in flight)


async def storedInstance(archive, text):
    """The indexed ``Instance`` of the stored file ``text``."""
    deviceName, objectFile = storedFile(archive, text)
    instances = await archive.index.runQuery(fileInstances, archive.query, deviceName, objectFile)
    if not instances:
        raise CommandError(f"{storedName(deviceName, objectFile)} is not in the index")
    return instances[0]


class ObjectGone(CommandError):
    """The file of a stored object is gone and the index names no other
    file of it: it was deleted (or stored again and deleted) meanwhile."""


async def rewrite(archive, instance, change, callingAE, keep=False, copy=False, edit=False):
    """Store ``change`` of the stored object ``instance`` (see the module
    docstring; ``copy``: it gives new UIDs, see ``storeObject``); the new
    file as ``storedName`` gives it, or None when the change changed
    nothing.  ``edit``: the change is a script's (modifyimage,
    modifystudy, modifyseries): a SOP Instance UID it gives must be that
    of no stored object, which it would replace, the two objects made
    one: one that is is refused, nothing changed (a UID the UID map gives,
    a copy's or a merge's, is that of an earlier copy of the same
    original, which it replaces); the object keeping its own is
    ``IncomingObject.rewritten``: it may leave a series that has other
    images for another of its study (a series split, or given a new UID
    object by object).  The rewrites of one SOP instance run one at a time: each
    starts from the row the index has for it then, so ObjectGone is raised
    when another rewrite gave it new UIDs (or a delete removed it)
    meanwhile.  When the file of ``instance`` is gone, the object was
    stored again meanwhile under another name: the file the index names
    now is changed instead, or ObjectGone is raised when there is none
    (also when its row goes within a few seconds: a delete removes the
    file first, then the row); a row still naming the missing file then
    fails with the read error (or the device's folder not there: a disk
    not mounted).  Should the original's row be gone by the time the
    changed copy is stored (a delete), the copy is removed again and
    ObjectGone raised: an object never ends up in two places."""
    return await archive.objectChanges.run(instance.sopInstanceUID, _rewrite, archive, instance, change,
                                           callingAE, keep, copy, edit)


async def _rewrite(archive, instance, change, callingAE, keep, copy, edit):
    """``rewrite``, the rewrites of the SOP instance before it done."""
    now = await _row(archive, instance)
    if now is None:
        raise ObjectGone(f"{storedName(instance.deviceName, instance.objectFile)} is no longer stored")
    instance, (incoming, data, changed) = await _readStored(archive, now, change, callingAE)
    if not changed:
        return None
    old = storedName(instance.deviceName, instance.objectFile)
    if edit and incoming.sopInstanceUID != instance.sopInstanceUID:
        indexed = await _rows(archive, incoming.sopInstanceUID)
        if indexed and not await _copyOf(archive, incoming.sopInstanceUID, instance.sopInstanceUID):
            raise CommandError(f"{old}: SOP Instance UID {incoming.sopInstanceUID} is that of the stored object "
                               f"{storedName(indexed[0].deviceName, indexed[0].objectFile)}; nothing was changed")
    elif edit:
        incoming = dataclasses.replace(incoming, rewritten=True)
    device, relative = await storeObject(archive, incoming, data, old, copy)
    if not keep and incoming.sopInstanceUID != instance.sopInstanceUID:
        sameFile = (device, relative) == (instance.deviceName, instance.objectFile)
        removal = await archive.localActions.removeInstances([instance], files=not sameFile)
        if not removal.removed and not sameFile:
            copies = await _rows(archive, incoming.sopInstanceUID)
            await archive.localActions.removeInstances(copies)
            raise ObjectGone(f"{old} was deleted or stored again while being changed: its changed copy is removed")
    return storedName(device, relative)


async def _copyOf(archive, new, old):
    """Whether the UID map made ``new`` for ``old``: the object indexed
    under ``new`` is an earlier copy of ``old`` (a script's ``newuids`` run
    again after the modality sent ``old`` again), which the rewrite
    replaces."""
    return await archive.workers.deferToWorker(archive.converterServices.uidMap.oldFor, new) == old


async def _readStored(archive, instance, change, callingAE):
    """``(instance, readObject's result)`` of the stored object
    ``instance``, or of the file the index names for it now when its file
    is gone (see ``rewrite``)."""
    while True:
        name = storedName(instance.deviceName, instance.objectFile)
        try:
            path = await archive.workers.deferToWorker(archive.objectReader.path, instance.deviceName,
                                                       instance.objectFile)
            return instance, await readObject(archive, path, change, callingAE=callingAE)
        except OSError as e:
            raise CommandError(f"{name}: {e}") from e
        except CommandError as e:
            if not isinstance(e.__cause__, FileNotFoundError):
                raise
            readError = e
        now = await _settledRow(archive, instance)
        if now is None:
            raise ObjectGone(f"{name} is no longer stored")
        if (now.deviceName, now.objectFile) == (instance.deviceName, instance.objectFile):
            await checkDevicePresent(archive, device(archive, instance.deviceName))
            raise readError
        instance = now


async def _settledRow(archive, instance):
    """The index's ``Instance`` of the SOP instance of ``instance`` (None:
    there is none) once it no longer names the file of ``instance``, or,
    when it still does after ``SETTLE_TRIES`` looks ``SETTLE_DELAY``
    seconds apart, that row: a delete or a rewrite removes the file before
    the row, so a missing file whose row is still there is usually one
    half removed."""
    for tries in range(SETTLE_TRIES, 0, -1):
        now = await _row(archive, instance)
        if now is None or (now.deviceName, now.objectFile) != (instance.deviceName, instance.objectFile):
            break
        if tries > 1:
            await task.deferLater(archive.reactor, SETTLE_DELAY, lambda: None)
    return now


async def _row(archive, instance):
    """The index's ``Instance`` of the SOP instance of ``instance`` now, or None."""
    rows = await _rows(archive, instance.sopInstanceUID)
    return rows[0] if rows else None


def _rows(archive, sopInstanceUID):
    """The index's ``Instance``s of SOP instance ``sopInstanceUID`` now (a Deferred)."""
    return archive.index.runQuery(archive.query.instances, "IMAGE", [QueryKey(SOP_INSTANCE_UID, "UI", sopInstanceUID)])


class _FileCommand(AsyncControlCommand):
    """A change of one stored file: ``split(arguments)`` gives the file and
    the other argument, ``change(other, archive, instance)`` the change;
    ``keep`` the original; ``newUIDs``: the change gives it new UIDs from
    the UID map (a copy, ``storeObject``); ``edits``: the change is a
    script's (``rewrite``'s ``edit``)."""

    log = Logger()
    keep = False
    newUIDs = False
    edits = False

    async def execute(self, arguments, context):
        archive = context.archive
        text, other = self.split(arguments)
        instance = await storedInstance(archive, text)
        change = await self.change(other, archive, instance)
        stored = await rewrite(archive, instance, change, self.name[:16], self.keep, self.newUIDs, self.edits)
        old = storedName(instance.deviceName, instance.objectFile)
        if stored is None:
            return f"{old}: nothing changed"
        self.log.info("{peer}: {command}: {old} stored as {new}", peer=context.peer, command=self.name,
                      old=old, new=stored)
        return f"{old} {'copied' if self.keep else 'changed'}: {stored}"

    def split(self, arguments):
        """``patid,file`` -> ``(file, patid)``."""
        patientID, text = fields(arguments, 2)
        return text, exactValue(patientID, "patient ID")

    async def change(self, other, archive, instance):
        raise NotImplementedError


class ModifyPatID(_FileCommand):
    name = "modifypatid"
    usage = "--modifypatid:patid,file  Change patid of given file (new UIDs)"
    newUIDs = True

    async def change(self, patientID, archive, instance):
        patient = await storedSample(archive, "PATIENT", QueryKey(PATIENT_ID, "LO", patientID))
        study = await archive.index.runQuery(archive.query.instances, "STUDY",
                                             [QueryKey(STUDY_INSTANCE_UID, "UI", instance.studyInstanceUID)])
        return newPatient(archive.converterServices.uidMap, patientID, patient, changing(study))


class CopyPatID(ModifyPatID):
    name = "copypatid"
    usage = "--copypatid:patid,file  Copy given file to patid (new UIDs; dgate -fk)"
    keep = True


class Anonymize(_FileCommand):
    name = "anonymize"
    usage = "--anonymize:patid,file  Anonymize given file (anonymize_script.cq/.lua, new UIDs)"
    newUIDs = True

    async def change(self, patientID, archive, instance):
        script = await archive.workers.deferToWorker(self._script, archive)
        return anonymized(archive.converterServices.uidMap, patientID, script, archive.converterServices)

    @staticmethod
    def _script(archive):
        """The configuration folder's anonymize script, or None."""
        folder = archive.configuration.configDir
        for name in ANONYMIZE_SCRIPTS:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                if name.endswith(".lua"):
                    return _parsed(f"lua:{name}", name, archive)
                try:
                    lines = readTextLines(path)
                except ConfigError as e:
                    raise CommandError(str(e)) from e
                return _parsed(";".join(line for line in lines if not isComment(line)), name, archive)
        return None


class ModifyImage(_FileCommand):
    name = "modifyimage"
    usage = "--modifyimage:file,script  Change items in file (converter script)"
    edits = True

    def split(self, arguments):
        text, script = fields(arguments, 2)
        return text, modifyScript(script, self.name, "file")

    async def change(self, script, archive, instance):
        return scripted(_parsed(script, self.name, archive), archive.converterServices)


def modifyScript(script, name, what):
    """The script of modifyimage (``name``:``what``,script), Conquest's
    single quotes made double (``conquestQuotes``); refused when empty."""
    if not script.strip():
        raise CommandError(f'{name} needs a script, e.g. {name}:{what},set 0010,0010 to "X"')
    return conquestQuotes(script)


def conquestQuotes(script):
    """``script`` with every ``'`` made ``"`` when it quotes a value with
    them (`` to '`` or `` if '``), as Conquest's modifyimage does: scripts
    written in a batch file or a Lua string use ``set 0010,0010 to 'X'``."""
    lowered = script.lower()
    if " to '" in lowered or " if '" in lowered:
        return script.replace("'", '"')
    return script


def _parsed(text, name, archive):
    try:
        return parseScript(text, name, archive.commands, "import")
    except ConverterSyntaxError as e:
        raise CommandError(str(e)) from e


class _Batch(AsyncControlCommand):
    """A change of many stored objects, which skips one deleted meanwhile;
    ``edits`` as ``_FileCommand``'s."""

    log = Logger()
    edits = False

    async def _rewrite(self, context, instance, change):
        """Rewrite one object: its new file's name (None: nothing changed),
        or False (logged) when it was deleted meanwhile."""
        try:
            return await rewrite(context.archive, instance, change, self.name[:16], edit=self.edits)
        except ObjectGone as e:
            self.log.info("{peer}: {command}: {error}: skipped", peer=context.peer, command=self.name, error=e)
            return False


class _ModifyAll(_Batch):
    """``modifystudy`` / ``modifyseries``: ``patid,uid,script``, modifyimage's
    script applied to each object of the study or series (``tag``),
    with its checks, one object at a time."""

    edits = True

    async def execute(self, arguments, context):
        archive = context.archive
        patientID, uid, script = fields(arguments, 3)
        keys = [QueryKey(self.tag, "UI", uidValue(uid, f"{self.what} UID"))]
        if patientID.strip():
            keys.append(QueryKey(PATIENT_ID, "LO", exactValue(patientID, "patient ID")))
        change = scripted(_parsed(modifyScript(script, self.name, f"patid,{self.what}uid"), self.name, archive),
                          archive.converterServices)
        instances = await archive.index.runQuery(archive.query.instances, "IMAGE", keys)
        if not instances:
            raise CommandError(f"{self.name}: no stored object in {self.what} {uid.strip()}")
        results = []
        for number, instance in enumerate(instances, 1):
            try:
                results.append(await self._rewrite(context, instance, change))
            except CommandError as e:
                summary = self._summary(results, uid, of=len(instances))
                failure = (f"{summary}, then object {instance.sopInstanceUID} failed: {e}; the "
                           f"{len(instances) - number} after it not done")
                self.log.error("{peer}: {command}: {problem}", peer=context.peer, command=self.name, problem=failure)
                raise CommandError(failure, output=e.output) from e
            if number % PROGRESS_EVERY == 0:
                context.progress(f"{number} of {len(instances)} object(s) done")
        summary = self._summary(results, uid)
        self.log.info("{peer}: {command}: {summary}", peer=context.peer, command=self.name, summary=summary)
        return summary

    def _summary(self, results, uid, of=None):
        """What ``results`` of ``_rewrite`` (of the objects of the study or
        series ``uid``; ``of``: how many it has, when not all were done)
        did."""
        changed, skipped = sum(1 for r in results if r), results.count(False)
        unchanged = len(results) - changed - skipped
        gone = f", {skipped} skipped: deleted meanwhile" if skipped else ""
        count = changed if of is None else f"{changed} of {of}"
        return f"{count} object(s) of {self.what} {uid.strip()} changed, {unchanged} unchanged{gone}"


class ModifyStudy(_ModifyAll):
    name = "modifystudy"
    usage = "--modifystudy:patid,studyuid,script  Change items in each file of a study (converter script)"
    what, tag = "study", STUDY_INSTANCE_UID


class ModifySeries(_ModifyAll):
    name = "modifyseries"
    usage = "--modifyseries:patid,seriesuid,script  Change items in each file of a series (converter script)"
    what, tag = "series", SERIES_INSTANCE_UID


class _Merge(_Batch):
    """``mergestudy`` / ``mergeseries``: ``tag`` and ``keyword`` of the
    level, ``parent`` the attribute all must share."""

    async def execute(self, arguments, context):
        archive = context.archive
        uids = [uidValue(uid, self.what) for uid in arguments.split(",")]
        if len(uids) < 2 or len(set(uids)) < len(uids):
            raise CommandError(f"{self.name} needs two or more different {self.whats}")
        target, others = uids[0], uids[1:]
        instances = await archive.index.runQuery(archive.query.instances, self.level,
                                                 [QueryKey(self.tag, "UI", "\\".join(uids))])
        found = {getattr(instance, self.field) for instance in instances}
        missing = [uid for uid in uids if uid not in found]
        if missing:
            raise CommandError(f"no stored object in {self.what} {', '.join(missing)}")
        parents = {getattr(instance, self.parent) for instance in instances}
        if len(parents) > 1:
            raise CommandError(f"{self.name}: the {self.whats} are not of one {self.parentWhat} "
                               f"({', '.join(sorted(parents))})")
        uidMap = archive.converterServices.uidMap
        try:
            for uid in others:
                await archive.workers.deferToWorker(uidMap.merge, uid, target, self.modType)
        except ValueError as e:
            raise CommandError(f"{self.name}: {e}") from e
        moving = [instance for instance in instances if getattr(instance, self.field) != target]
        sample = await sampleOf(archive, next(instance for instance in instances
                                              if getattr(instance, self.field) == target))
        changed = changing(moving, self.lower)
        change = mergedInto(uidMap, self.keyword, target, sample, changed)
        skipped = 0
        for number, instance in enumerate(moving, 1):
            skipped += await self._rewrite(context, instance, change) is False
            if number % PROGRESS_EVERY == 0:
                context.progress(f"{number} of {len(moving)} object(s) merged")
        references = referencesRenewed(uidMap, changed)
        for instance in instances:
            if getattr(instance, self.field) == target:
                await self._rewrite(context, instance, references)
        merged = len(moving) - skipped
        gone = f" ({skipped} skipped: deleted meanwhile)" if skipped else ""
        self.log.info("{peer}: {command}: {count} object(s) of {others} merged into {target}{gone}",
                      peer=context.peer, command=self.name, count=merged, others=",".join(others),
                      target=target, gone=gone)
        return f"{merged} object(s) of {len(others)} {self.what}(s) merged into {self.what} {target}{gone}"


class MergeStudy(_Merge):
    name = "mergestudy"
    usage = "--mergestudy:uid,uid,..  Merge studies into the first (one patient)"
    what, level, tag, field, keyword = "study", "STUDY", STUDY_INSTANCE_UID, "studyInstanceUID", "StudyInstanceUID"
    parent, parentWhat, modType, whats = "patientID", "patient", "MergeStudy", "studies"
    lower = "SeriesInstanceUID"


class MergeSeries(_Merge):
    name = "mergeseries"
    usage = "--mergeseries:uid,uid,..  Merge series into the first (one study)"
    what, level, tag, field, keyword = "series", "SERIES", SERIES_INSTANCE_UID, "seriesInstanceUID", \
        "SeriesInstanceUID"
    parent, parentWhat, modType, whats = "studyInstanceUID", "study", "MergeSeries", "series"
    lower = "SOPInstanceUID"


class _MergeFile(_FileCommand):
    """``mergestudyfile`` / ``mergeseriesfile``: one object of a study or
    series merged before joins the one it was merged into."""

    merge = MergeStudy

    def split(self, arguments):
        return arguments, ""

    async def change(self, other, archive, instance):
        merge = self.merge
        old = getattr(instance, merge.field)
        target = await archive.workers.deferToWorker(archive.converterServices.uidMap.mergedInto, old)
        if target is None:
            raise CommandError(f"{merge.what} {old} was not merged ({merge.name})")
        sample = await storedSample(archive, merge.level, QueryKey(merge.tag, "UI", target))
        return mergedInto(archive.converterServices.uidMap, merge.keyword, target, sample)


class MergeStudyFile(_MergeFile):
    name = "mergestudyfile"
    usage = "--mergestudyfile:file  Merge file into the study its study was merged into"


class MergeSeriesFile(_MergeFile):
    name = "mergeseriesfile"
    usage = "--mergeseriesfile:file  Merge file into the series its series was merged into"
    merge = MergeSeries
