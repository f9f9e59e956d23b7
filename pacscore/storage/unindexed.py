"""The copies that stores left on disk unindexed, remembered across a restart.

A store whose index write fails (the database down) keeps its file for a
later store of its SOP instance to remove (``ObjectStore._replaceUnindexed``);
the sender was told it failed (0x0110).  Kept in memory only, a restart
forgot them: the next store of the instance left them, and a ``dgate -r``
could index such a refused copy (newer) in place of the acknowledged one.
The database, which could hold them, is the part that failed, so each
device holding such copies lists them in a hidden file of its own,
``.pacs-unindexed`` (regen takes it for no object, and indexes a copy it
lists only when no copy not listed is there: ``listedCopies``): one
``SOP Instance UID<TAB>name`` line per copy, the file rewritten whole
(temporary file, fsync, rename, fsync of the folder) in the I/O pool each
time its copies change, before
the refusal is answered, and removed once it lists none.  A list that
start-up did not read (unreadable, its device not mounted then) is set
aside as ``.pacs-unindexed.unread-N`` rather than rewritten over, and read
with the others at the next start-up.  A ``.pacs-unindexed.part`` a kill
left between writing it and its rename (a newer list, maybe cut short) is
read with them, by start-up and by regen, up to its last whole line; at
start-up it is set aside as such a list too, never removed nor written over
before the list is written again with its copies
(``UnindexedCopies.settleParts``).  At start-up
``ObjectStore.settleUnindexed`` removes those of objects whose indexed file
is intact.
"""

import glob
import itertools
import os
import threading
from collections import Counter
from collections.abc import MutableMapping

from twisted.logger import Logger

from pacscore.storage.devices import fsyncDirectory, identityOf, removeFile

JOURNAL = ".pacs-unindexed"
PART = ".part"  # JOURNAL + PART: the list being written, renamed to JOURNAL once whole
UNREAD = ".unread-"  # JOURNAL + UNREAD + a number: a list set aside, not read when it was to be rewritten


def listPaths(device):
    """The paths of the lists of ``device``: its ``.pacs-unindexed``, then
    those set aside (``UnindexedCopies._setAside``), then the ``.part`` a
    stop may have left (``UnindexedCopies.settleParts``), there or not."""
    path = os.path.join(device.path, JOURNAL)
    return [path] + sorted(glob.glob(glob.escape(path + UNREAD) + "*")) + [path + PART]


def readList(path):
    """``[(SOP Instance UID, name)]`` the list at ``path`` holds; OSError or
    UnicodeDecodeError when it cannot be read.  Its lines end in "\\n" alone
    (``str.splitlines`` would also end them at a NEL, U+0085, or a U+2028,
    which a name keeps: a patient name read as Latin-1); neither a name
    (stores leave control characters out of names) nor a UID (digits and
    dots) holds a "\\n" or a "\\t".  What follows the last "\\n" is a line
    cut short (a ``.part`` a stop left, cut anywhere, in a character too):
    passed over."""
    with open(path, "rb") as f:
        whole, _, _ = f.read().rpartition(b"\n")
    lines = whole.decode("utf-8").split("\n")
    return [(uid, name) for uid, _, name in (line.partition("\t") for line in lines) if uid and name]


def listedCopies(devices, report):
    """``{(device name, name)}`` of the copies the lists of ``devices``
    name (those set aside too), for regen to index another copy of their
    SOP instances in their place; a list that cannot be read is told of to
    ``report`` (a line)."""
    listed = set()
    for device in devices:
        for path in listPaths(device):
            try:
                listed.update((device.name, name) for _, name in readList(path))
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as e:
                report(f"[Regen] {path} cannot be read ({e}): the copies the index failed on that it lists are "
                       f"indexed like the others, the newest copy of a SOP instance")
    return listed


class CopiesBySOP(MutableMapping):
    """``{SOP Instance UID: [(device name, name)]}`` of the copies the index
    failed on (``ObjectStore._unindexed``), with a count of each copy kept
    in step, so that whether one is listed (``ObjectStore.isListed``, asked
    per file by a regen's batch) is one look-up, not a scan of every list.
    Written from one thread (the reactor, or start-up), a SOP instance's
    list given whole (never changed in place); read from any: a copy moved
    from one SOP instance's list to another is counted in both while it
    moves, never in neither."""

    def __init__(self, copies=()):
        self._copies = {}
        self._counts = Counter()
        self.update(copies)

    def __contains__(self, uid):
        return uid in self._copies

    def __getitem__(self, uid):
        return self._copies[uid]

    def __setitem__(self, uid, files):
        self._counts.update(files)  # first: a copy in both lists stays counted
        earlier = self._copies.get(uid, ())
        self._copies[uid] = files
        self._forget(earlier)

    def __delitem__(self, uid):
        self._forget(self._copies.pop(uid))

    def __iter__(self):
        return iter(self._copies)

    def __len__(self):
        return len(self._copies)

    def _forget(self, files):
        for location in files:
            self._counts[location] -= 1
            if not self._counts[location]:
                del self._counts[location]

    def listed(self, location):
        """Whether a SOP instance lists ``location``, ``(device name, name)``."""
        return location in self._counts


class UnindexedCopies:
    """The ``.pacs-unindexed`` files of the devices ``devicesByName``."""

    log = Logger()

    def __init__(self, devicesByName):
        self.devicesByName = devicesByName
        self._lock = threading.Lock()
        self._saved = {}  # device name: the version its file holds
        self._known = {}  # real path of a list: the fileIdentity of the one read or written last (none: None)
        self._merged = {}  # device name: its lists set aside that load read, removed once its list is written

    def load(self):
        """``{SOP Instance UID: [(device name, name)]}`` of the copies the
        files list that are still there (in the calling thread, at
        start-up), those set aside included (``_setAside``); logged.  A
        file that cannot be read is logged and passed over: its copies stay
        for regen, and it is set aside when its device's list is next
        written.  A ``.part`` a stop left (``save`` killed before its
        rename) is read too, with the list beside it (``settleParts``)."""
        copies = {}
        for deviceName, device in sorted(self.devicesByName.items()):
            main = os.path.join(device.path, JOURNAL)
            for path in listPaths(device):
                try:
                    identity = identityOf(path)
                    listed = readList(path)
                except FileNotFoundError:
                    continue
                except (OSError, UnicodeDecodeError) as e:
                    self.log.warn("{path} cannot be read ({error}): the copies the index failed on that it lists "
                                  "stay on disk until a regen", path=path, error=e)
                    continue
                if path == main:
                    self._known[os.path.realpath(path)] = identity
                else:
                    self._merged.setdefault(deviceName, []).append(path)
                for uid, name in listed:
                    if os.path.lexists(device.absolute(name)) and (deviceName, name) not in copies.get(uid, ()):
                        copies.setdefault(uid, []).append((deviceName, name))
        if copies:
            self.log.info("{count} file(s) stored before the restart that the index failed on (their senders "
                          "were told so) are remembered: a later store of their SOP instance removes them",
                          count=sum(len(files) for files in copies.values()))
        return copies

    def settleParts(self):
        """At start-up, after ``load``: the ``.pacs-unindexed.part`` a stop
        left (the server killed between writing one and renaming it over
        the list: a newer list, which names the copy of the refusal it was
        written for, never answered, maybe cut short) is set aside as a list
        start-up read, ``.pacs-unindexed.unread-N`` (``_setAside``), so that
        writing the list again (``save``, through a ``.part`` of its own)
        neither removes it nor writes over it before its copies are listed
        again; logged.  One ``load`` read is removed once the list is
        written; one it could not read stays, read again at the next
        start-up and by a regen.  The names of the devices whose list is to
        be written again (those whose ``.part`` was read)."""
        rewritten = []
        for deviceName, device in sorted(self.devicesByName.items()):
            main = os.path.join(device.path, JOURNAL)
            part = main + PART
            if not os.path.lexists(part):
                continue
            aside = self._asideName(main)
            try:
                os.rename(part, aside)
            except OSError as e:
                self.log.error("{part} was left by a stop while it was being written, and cannot be set aside "
                               "({error}): it stays as it is", part=part, error=e)
                continue
            merged = self._merged.get(deviceName, [])
            if part not in merged:
                self.log.warn("{part} was left by a stop while it was being written: set aside as {aside}, not "
                              "read; the copies the index failed on that it names stay on disk, read again at "
                              "the next start-up and by a regen", part=part, aside=aside)
                continue
            merged[merged.index(part)] = aside
            rewritten.append(deviceName)
            self.log.warn("{part} was left by a stop while it was being written: set aside as {aside}; the copies "
                          "the index failed on that it names and that are there are remembered, and {journal} is "
                          "written again with them", part=part, aside=aside, journal=main)
        return rewritten

    def save(self, deviceName, copies, version):
        """In the I/O pool: make the file of ``deviceName`` list ``copies``
        (``[(uid, name)]``), unless a later ``version`` of it was saved.
        A file there that is not the one read at start-up or written since
        is set aside first (``_setAside``); the lists set aside that load
        read are removed once it is written."""
        device = self.devicesByName[deviceName]
        path = os.path.join(device.path, JOURNAL)
        with self._lock:
            if self._saved.get(deviceName, -1) >= version:
                return
            self._setAside(path)
            if not copies:
                removeFile(path)
            else:
                temporary = path + PART
                with open(temporary, "w", encoding="utf-8") as f:
                    f.writelines(f"{uid}\t{name}\n" for uid, name in copies)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, path)
            fsyncDirectory(device.path)
            self._known[os.path.realpath(path)] = identityOf(path)
            self._saved[deviceName] = version
            for aside in self._merged.pop(deviceName, ()):
                removeFile(aside)

    def _setAside(self, path):
        """Rename ``path``, the list of a device about to be rewritten,
        to a free ``.pacs-unindexed.unread-N`` when it is not the one load
        read or ``save`` wrote since (it could not be read, or its device
        was not there at start-up), logged: rewritten from what is known,
        it would lose the copies it lists.  The next start-up reads it."""
        if identityOf(path) == self._known.get(os.path.realpath(path)):
            return
        aside = self._asideName(path)
        os.rename(path, aside)
        self.log.warn("{path} is not the list read at start-up (it could not be read, or its device was not there "
                      "then): set aside as {aside}, not overwritten; the copies the index failed on that it lists "
                      "stay on disk, remembered again at the next start-up", path=path, aside=aside)

    @staticmethod
    def _asideName(path):
        """A free ``.pacs-unindexed.unread-N`` beside ``path``, a device's list."""
        return next(candidate for candidate in (f"{path}{UNREAD}{number}" for number in itertools.count(1))
                    if not os.path.lexists(candidate))
