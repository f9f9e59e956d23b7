"""The objects virtual servers bring here with ``CacheVirtualData = 0``
(pacscore.dicom.virtual): each counts the retrieves (and WADO-RS
fetches) that hold it, and is deleted once the last of them is over.

Their SOP Instance UIDs are written to a file of the working folder
(``RECORD``) before they are asked for, and stay there until they are
deleted: those a stop or a crash left during a retrieve are deleted when
pacs starts again (``purge``), with or without virtual servers then.
"""

import os
from collections import Counter

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.db.query import QueryKey

RECORD = "virtualfetched.lst"
CHUNK = 500  # UIDs per SELECT ... IN (SQLite's variable limit)


async def instancesOf(index, query, uids):
    """The index's ``Instance``s of the SOP Instance UIDs ``uids``."""
    instances = []
    for start in range(0, len(uids), CHUNK):  # an empty list asks nothing (not everything)
        key = QueryKey(query.tables[3].keyTag, "UI", "\\".join(uids[start:start + CHUNK]))
        instances += await index.runQuery(query.instances, "IMAGE", [key])
    return instances


class UncachedObjects:
    """See the module docstring.  ``actions`` (``LocalActions``) deletes,
    ``workers`` (a ``WorkerPool``) writes the record."""

    log = Logger()

    def __init__(self, path, index, query, actions, workers):
        self.path = path
        self.index = index
        self.query = query
        self.actions = actions
        self.workers = workers
        self.holders = Counter()  # SOP Instance UID -> retrieves holding the object
        self.lock = defer.DeferredLock()  # orders the looks for objects here with their deletions
        self.leftover = self._read()  # the UIDs the run before left (at start-up, before the reactor runs)

    def _read(self):
        try:
            with open(self.path, encoding="ascii") as f:
                return {line.strip() for line in f if line.strip()}
        except FileNotFoundError:
            return set()

    def _write(self, uids):
        """In a worker: the record holds ``uids`` (the file is gone when none)."""
        if not uids:
            if os.path.exists(self.path):
                os.remove(self.path)
            return
        partial = self.path + ".part"
        with open(partial, "w", encoding="ascii") as f:
            f.writelines(uid + "\n" for uid in uids)
        os.replace(partial, self.path)

    def _save(self):
        return self.workers.deferToWorker(self._write, sorted(self.leftover | set(self.holders)))

    async def hold(self, uids):
        """``(missing, shared)`` of the SOP Instance UIDs ``uids`` a
        retrieve is to send: those not here (left by the run before
        counting as not here), which it fetches, and those here only because
        another retrieve fetched them and holds them.  The retrieve holds
        both from now on (``release`` them); their record is written first."""
        async with self.lock:  # no deletion between the look and the count
            known = {instance.sopInstanceUID for instance in await instancesOf(self.index, self.query, uids)}
            known -= self.leftover
            missing = [uid for uid in uids if uid not in known]
            shared = [uid for uid in uids if uid in known and self.holders[uid]]
            self.holders.update(missing + shared)
            await self._save()
        return missing, shared

    async def release(self, uids):
        """A retrieve is over with the objects ``uids`` it held: those no
        other one holds are deleted."""
        if not uids:
            return
        async with self.lock:
            self.holders.subtract(uids)
            done = [uid for uid in dict.fromkeys(uids) if self.holders[uid] <= 0]
            for uid in done:
                del self.holders[uid]
            if not done:
                return
            try:
                count = await self._delete(done)
            except Exception as e:  # the index is stopped or fails: the next start deletes them
                self.leftover.update(done)
                self.log.warn("{count} object(s) fetched from virtual servers are left for the next start to "
                              "delete: {error}", count=len(done), error=e)
                return
            await self._save()
        if count:
            self.log.info("{count} object(s) fetched from virtual servers deleted (CacheVirtualData = 0)",
                          count=count)

    async def purge(self):
        """Once the index runs: delete the objects the run before left."""
        if not self.leftover:
            return
        async with self.lock:
            count = await self._delete(sorted(self.leftover - set(self.holders)))
            self.leftover = set()
            await self._save()
        self.log.info("{count} object(s) fetched from virtual servers before a stop deleted "
                      "(CacheVirtualData = 0)", count=count)

    async def _delete(self, uids):
        """Delete the objects of ``uids`` that are here; how many they were."""
        if not uids:
            return 0
        return (await self.actions.removeInstances(await instancesOf(self.index, self.query, uids))).removed
