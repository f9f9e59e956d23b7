"""The queued actions that stay on this server: ``delete``, ``process``
and ``prefetch`` (manual 7.2, the command table).

``delete`` removes the files (and their mirror copies) first, then their index rows (and the series,
study and patient rows left without images) through the index writer, so
it is ordered with stores.  A crash between the two leaves rows whose
files are gone; the action is still queued then, runs again and removes
them: the end state is the same.  ``process`` runs its command line (the
``by`` part, %-variables expanded and quoted as data when the converter
ran) once the collect delay has passed; a non-zero exit status is a failure, retried.
A command line that starts with a Lua file (``by x.lua text``) runs that
script instead (as ``lua:`` finds it, no ``Data``, ``command_line`` the
text: Conquest passes nothing else); an error in it is a failed action.
``prefetch`` reads every file of the patient once (to warm a cache or
hierarchical storage).
"""

import subprocess

from sqlalchemy import and_, exists, select
from twisted.logger import Logger

from pacscore.converters.command import luaScriptOf
from pacscore.converters.lua import LuaFailure, runProcessScript
from pacscore.export.forwarder import ForwardError
from pacscore.export.selection import indexKeys
from pacscore.storage.devices import removeFile

CHUNK = 500  # UIDs per IN (...): SQLite's variable limit


class LocalActions:
    """``delete``/``process``/``prefetch`` of queued ``Action``s; each
    fires with how many objects (or commands) it handled."""

    log = Logger()
    processTimeout = 3600

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
        await self.removeInstances(instances)
        self.log.info("deleted {count} objects of {entity} {uid}", count=len(instances),
                      entity=action.level.lower(), uid=action.target.uid(action.level))
        return len(instances)

    async def removeInstances(self, instances, files=True):
        """Remove the files of ``instances`` (``IndexQuery`` ``Instance``s;
        with ``files=False`` they stay), then their index rows and the
        series, study and patient rows left empty; fires with how many."""
        if files:
            await self.workers.deferToWorker(self._removeFiles, instances)
        await self.index.runWrite(self._deleteRows, instances)
        return len(instances)

    def _removeFiles(self, instances):
        for instance in instances:
            for path in self.reader.copies(instance.deviceName, instance.objectFile):
                removeFile(path)

    def _deleteRows(self, connection, instances):
        """In the index writer: the image rows, then parents left empty."""
        tables = self.query.tables
        affected = [[instance.sopInstanceUID for instance in instances],
                    [instance.seriesInstanceUID for instance in instances],
                    [instance.studyInstanceUID for instance in instances],
                    [instance.patientID for instance in instances]]
        image = tables[3]
        for chunk in _chunks(affected[0]):
            connection.execute(image.table.delete().where(image.key.in_(chunk)))
        for level, keys in ((2, affected[1]), (1, affected[2]), (0, affected[3])):
            parent, child = tables[level], tables[level + 1]
            orphan = ~exists(select(child.link).where(child.link == parent.key))
            for chunk in _chunks(sorted(set(keys))):
                connection.execute(parent.table.delete().where(and_(parent.key.in_(chunk), orphan)))
        self.index.forgetCache()

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


def _chunks(values):
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]
