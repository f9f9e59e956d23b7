"""The queued actions that stay on this server: ``delete``, ``process``
and ``prefetch`` (manual 7.2, the command table).

``delete`` removes the files (and their mirror copies) first, then their index rows (and the series,
study and patient rows left without images; those left with images take the
values of the one stored last) through the index writer, so
it is ordered with stores.  A row goes only while it still names the file
removed (SOP Instance UID, device and file name) and no file was stored
under that name since: an object stored again meanwhile (under another
name, or the same one: a file goes only while it is still the one the
delete noted, its ``identityOf``, kept in ``PacsDeletes`` for the next
start as its size and modification time, ``lastingIdentity``) keeps its new row and file, and
is counted kept; a file of another SOP instance given the freed name (a
FileNameSyntax without ``%sopuid``) is not that object, and the row goes.  The objects are
written to ``PacsDeletes`` before their files go, and taken out with their
rows: a delete that a crash cut short is finished at the next start
(``finishInterrupted``), so no row is left without its file.  A large
delete goes in parts (``removalChunk`` objects a writer request), so that
it does not hold the stores arriving meanwhile past their SQLTimeOut.  ``process`` runs its command line (the
``by`` part, %-variables expanded and quoted as data when the converter
ran) once the collect delay has passed; a non-zero exit status is a failure, retried.
A command line that starts with a Lua file (``by x.lua text``) runs that
script instead (as ``lua:`` finds it, no ``Data``, ``command_line`` the
text: Conquest passes nothing else); an error in it is a failed action.
``prefetch`` reads every file of the patient once (to warm a cache or
hierarchical storage).
"""

import subprocess
from typing import NamedTuple

from sqlalchemy import and_, exists, select
from twisted.logger import Logger

from pacscore.converters.command import luaScriptOf
from pacscore.converters.lua import LuaFailure, runProcessScript
from pacscore.export.forwarder import ForwardError
from pacscore.export.selection import indexKeys
from pacscore.storage.attributes import DatasetError
from pacscore.storage.devices import identityOf, lastingIdentityOf
from pacscore.storage.placing import heldInstance
from pacscore.storage.regen import fileRecord

CHUNK = 500  # UIDs per IN (...): SQLite's variable limit


class Removal(NamedTuple):
    """What ``removeInstances`` did: objects ``removed``, and ``kept``
    because they were stored again while being removed."""

    removed: int
    kept: int

    def __str__(self):
        kept = f", {self.kept} kept (stored again meanwhile)" if self.kept else ""
        return f"{self.removed} object(s) removed{kept}"


class LocalActions:
    """``delete``/``process``/``prefetch`` of queued ``Action``s; each
    fires with how many objects (or commands) it handled."""

    log = Logger()
    processTimeout = 3600
    removalChunk = 500  # objects per index writer request of removeInstances: stores go between them

    def __init__(self, index, query, reader, workers, services=None):
        self.index = index
        self.query = query
        self.reader = reader
        self.workers = workers
        self.services = services  # the ConverterServices a process script uses

    def _instances(self, action):
        return self.index.runQuery(self.query.instances, "IMAGE",
                                   indexKeys(action.level, action.target, action.filters))

    async def delete(self, action):
        instances = await self._instances(action)
        if not instances:
            return 0
        removal = await self.removeInstances(instances)
        self.log.info("deleted objects of {entity} {uid}: {removal}", removal=removal,
                      entity=action.level.lower(), uid=action.target.uid(action.level))
        return removal.removed

    async def deleteMatching(self, keys):
        """Remove the images that every key of ``keys`` (``QueryKey``s of
        any level) matches, as Conquest's RemoveFromPACS; how many went."""
        instances = await self.index.runQuery(self.query.instances, "IMAGE", keys)
        return (await self.removeInstances(instances)).removed if instances else 0

    async def removeInstances(self, instances, files=True):
        """Remove the files of ``instances`` (``IndexQuery`` ``Instance``s;
        with ``files=False`` they stay), then the index rows that still
        name them and the series, study and patient rows left empty; fires
        with a ``Removal``.

        The index writer is the stores' too: each of its requests here
        that removes rows handles ``removalChunk`` objects at most, so that the C-STOREs
        arriving meanwhile are indexed between them, not failed after
        ``SQLTimeOut`` behind a delete of a hundred thousand objects.  All
        the objects are first noted in ``PacsDeletes`` (``_journal``), in
        one request (a server killed before it commits notes none of them),
        then each part's files go and its rows, taking its entries out: a
        server killed in between finishes what was noted at its next start
        (``finishInterrupted``), so the files and rows of an object are
        both there or both gone, and the delete run again removes what is
        left.  An object stored again once noted (an entry taken out, its
        file not the one noted) is kept; one stored anew into the series
        or study being removed stays, with its parents.

        A file that cannot be removed fails it, once the rows of the files
        that went are removed and the others left as they are, none of
        them left to the next start (all their entries taken out in that
        same request); a failure removing the rows leaves them to it."""
        parts = list(_chunks(instances, self.removalChunk))
        identities = []
        if files:
            identities = list(_chunks(await self.index.runWrite(self._journal, instances), self.removalChunk))
        removed = 0
        for number, part in enumerate(parts):
            if files:
                try:
                    await self.workers.deferToWorker(self._removeUnchanged, part, identities[number])
                except OSError:
                    later = [instance for rest in parts[number + 1:] for instance in rest]
                    await self.index.runWrite(self._deleteRows, part, files, later)  # the rows of files kept stay
                    raise
            removed += await self.index.runWrite(self._deleteRows, part, files)
        removal = Removal(removed, len(instances) - removed)
        if removal.kept:
            self.log.info("{kept} object(s) stored again while being removed are kept", kept=removal.kept)
        return removal

    def finishInterrupted(self):
        """At start-up, before the index writer starts: finish the deletes
        that a stop cut short (``PendingDeletes``), files and rows.  Only
        the rows that still name the file as the delete saw it go, and their
        files unless another SOP instance was stored under the freed name
        since; an object stored again took its entry out (``Index``), and
        one whose file is not the one the delete noted (stored anew under
        its name by a release that does not take the entries out) keeps
        its row and file, logged, its entry taken out.  A
        file that cannot be removed stops it, logged: the rows of the files
        that went go with their entries (``_deleteRows``), in the same
        transaction; that object and those after it stay as they are, their
        entries too, for the next start."""
        with self.index.engine.begin() as connection:
            noted = self.index.deletes.left(connection)
            if not noted:
                return
            standing = self._stillNamed(connection, list(noted))
            gone, changed, error = self._removeFiles(standing, noted)
            if error is None:
                removed = self._deleteNamed(connection, [instance for instance in standing if instance not in changed])
                self.index.deletes.clear(connection)
            else:
                named = set(standing)
                removed = self._deleteRows(connection, [instance for instance in gone if instance not in changed],
                                           True, [instance for instance in noted if instance not in named] + changed)
        if changed:
            self.log.warn("The delete(s) interrupted when the server stopped: {count} object(s) kept, their files "
                          "changed (size or modification time) since the delete noted them (e.g. {path}: stored "
                          "again, or written to): delete them again if they are to go", count=len(changed),
                          path=self.reader.magPath(changed[0].deviceName, changed[0].objectFile))
        if error is not None:
            self.log.error("The delete(s) interrupted when the server stopped cannot be finished: the file of {uid} "
                           "cannot be removed ({error}); {removed} object(s) removed, {left} left as they are for "
                           "the next start", uid=standing[len(gone)].sopInstanceUID, error=error, removed=removed,
                           left=len(standing) - len(gone))
            return
        self.log.info("Finished the delete(s) interrupted when the server stopped: {removed} object(s) removed",
                      removed=removed)

    def _journal(self, connection, instances):
        """In the index writer: note ``instances`` in ``PacsDeletes``; the
        ``identityOf`` each file as they are noted.  A store of one of them
        whose file comes after is upserted after: it takes the entry out."""
        identities = [self._identityAt(instance) for instance in instances]
        self.index.deletes.write(connection, instances, identities)
        return identities

    def _identityAt(self, instance):
        """``identityOf`` the file of ``instance``; None when its device is gone."""
        try:
            return identityOf(self.reader.magPath(instance.deviceName, instance.objectFile))
        except OSError:
            return None

    def _removeUnchanged(self, instances, identities):
        """The files of ``instances`` that are still the ones of
        ``identities`` (``_journal``); one stored again under its name since
        stays, with its row (``_storedAgain``)."""
        for instance, identity in zip(instances, identities):
            self.reader.removeCopiesIfSame(instance.deviceName, instance.objectFile, identity)

    def _removeFiles(self, instances, identities):
        """The files of ``instances``, in order, but those given to another
        SOP instance since (``_heldByAnother``) and those that are not the
        file of their noted identity in ``identities`` (``{instance:
        lastingIdentity, or None when not known}``); the instances done, those
        of them whose files stay as not the ones noted, and the
        ``OSError`` that stopped it at the next one (None when none did)."""
        changed = []
        for number, instance in enumerate(instances):
            identity = identities[instance]
            try:
                if self._heldByAnother(instance):
                    continue
                if identity is None:
                    self.reader.removeCopies(instance.deviceName, instance.objectFile)
                elif not self.reader.removeCopiesIfSame(instance.deviceName, instance.objectFile, identity,
                                                        lastingIdentityOf):
                    changed.append(instance)
            except OSError as e:
                return instances[:number], changed, e
        return instances, changed, None

    def _deleteRows(self, connection, instances, filesRemoved, forgotten=()):
        """In the index writer (ordered with stores): the image rows that
        still name the files of ``instances`` (with ``filesRemoved``, only
        where no file was stored under that name since), then parents left
        empty; the series, studies and patients left take the values of
        their object stored last (its file read here, once, up to the
        attributes the index keeps, in the writer's thread: a store between
        could otherwise be undone) and the studies' modalities are made
        again of their series'; how many image rows went.  With
        ``filesRemoved``, the entries of ``instances`` and of ``forgotten``
        (those a failed delete leaves as they are) are taken out."""
        candidates = [instance for instance in instances if not (filesRemoved and self._storedAgain(instance))]
        removed = self._deleteNamed(connection, self._stillNamed(connection, candidates))
        if filesRemoved:
            self.index.deletes.clear(connection, [instance.sopInstanceUID for instance in (*instances, *forgotten)])
        return removed

    def _deleteNamed(self, connection, gone):
        """The image rows of ``gone`` (that ``_stillNamed`` found), then the
        parents left empty, the values of those left and the studies'
        modalities, as ``_deleteRows`` tells; how many image rows went."""
        tables = self.query.tables
        image = tables[3]
        for chunk in _chunks([instance.sopInstanceUID for instance in gone]):
            connection.execute(image.table.delete().where(image.key.in_(chunk)))
        for level, keys in ((2, [instance.seriesInstanceUID for instance in gone]),
                            (1, [instance.studyInstanceUID for instance in gone]),
                            (0, [instance.patientID for instance in gone])):
            parent, child = tables[level], tables[level + 1]
            orphan = ~exists(select(child.link).where(child.link == parent.key))
            for chunk in _chunks(sorted(set(keys))):
                connection.execute(parent.table.delete().where(and_(parent.key.in_(chunk), orphan)))
        studies = sorted({instance.studyInstanceUID for instance in gone})
        self.index.refreshParents(connection, [(level, key) for level, keys in (
            (2, {instance.seriesInstanceUID for instance in gone}), (1, studies),
            (0, {instance.patientID for instance in gone})) for key in sorted(keys)], self._lastStored)
        self.index.rebuildModalities(connection, studies)
        self.index.forgetCache()
        return len(gone)

    def _stillNamed(self, connection, instances):
        """Those of ``instances`` whose image row still names their file
        (SOP Instance UID, device and file name)."""
        image = self.query.tables[3]
        columns = image.table.c
        named = set()
        for chunk in _chunks([instance.sopInstanceUID for instance in instances]):
            named.update(connection.execute(select(image.key, columns.DeviceName, columns.ObjectFile)
                                            .where(image.key.in_(chunk))).all())
        return [instance for instance in instances
                if (instance.sopInstanceUID, instance.deviceName, instance.objectFile) in named]

    def _lastStored(self, deviceName, objectFile):
        """The ``ImageRecord`` of the stored file ``objectFile`` on
        ``deviceName``, of the attributes the index keeps (read up to them,
        never into the Pixel Data); None when it does not read."""
        try:
            return fileRecord(self.reader.path(deviceName, objectFile), self.query.columnVRs, deviceName, objectFile,
                              wholeDataset=False)
        except (OSError, DatasetError):
            return None

    def _storedAgain(self, instance):
        """True when the file at the name of ``instance`` holds its SOP
        instance again after ``_removeFiles``: the object was stored anew
        under it (another instance given the freed name is not it)."""
        return self._heldAt(instance) == instance.sopInstanceUID

    def _heldByAnother(self, instance):
        """True when the file at the name of ``instance`` holds another SOP
        instance: given the freed name since."""
        return self._heldAt(instance) not in (None, instance.sopInstanceUID)

    def _heldAt(self, instance):
        """The SOP Instance UID the file at the name of ``instance`` holds;
        None when there is none, it does not read, or its device is gone."""
        try:
            return heldInstance(self.reader.magPath(instance.deviceName, instance.objectFile))
        except OSError:
            return None

    async def process(self, action):
        command = action.filters.get("by", "")
        luaScript = luaScriptOf(command)
        if luaScript is not None:
            script, commandLine = luaScript
            try:
                await self.workers.deferToWorker(runProcessScript, self.services, script, commandLine)
            except LuaFailure as e:
                raise ForwardError(f"process script {script}: {e}") from None
            return 1
        result = await self.workers.deferToWorker(
            subprocess.run, command, shell=True, capture_output=True, text=True, timeout=self.processTimeout)
        if result.returncode != 0:
            raise ForwardError(f"process command {command!r} exited with {result.returncode}: "
                               f"{(result.stderr or result.stdout).strip()[:200]}")
        return 1

    async def prefetch(self, action):
        instances = await self._instances(action)
        return await self.workers.deferToWorker(self.reader.readAll, instances)


def _chunks(values, size=CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]
