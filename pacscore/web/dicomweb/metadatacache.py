"""The encoded DICOM JSON of stored files that WADO-RS ``metadata`` made
lately, kept so that a series asked again (viewers ask for it each time
they open it) is answered without parsing its files: by path and address,
valid while the file is the same one (device, inode, size, modification
and change times), at most ``MOST_BYTES`` of it, the least lately used
dropped first.  A file written in the last ``UNSETTLED_NS`` is not kept:
within the file system's timestamp granularity a later write could leave
its times as they were."""

import collections
import os
import threading
import time

from pacscore.storage.devices import fileIdentity

MOST_BYTES = 64 << 20
UNSETTLED_NS = 2_000_000_000


class MetadataCache:
    """Thread safe: ``metadata`` is called in the I/O pool."""

    def __init__(self, mostBytes=MOST_BYTES, clock=time.time_ns):
        self.mostBytes = mostBytes
        self.clock = clock
        self._held = collections.OrderedDict()  # (path, url): (identity, text)
        self._bytes = 0
        self._lock = threading.Lock()

    def metadata(self, path, url, make):
        """``make(path, url)`` (bytes), or what it gave for the same file
        and ``url`` before."""
        key = (str(path), url)
        found = os.stat(path)
        identity = fileIdentity(found) + (found.st_ctime_ns,)
        with self._lock:
            held = self._held.get(key)
            if held is not None and held[0] == identity:
                self._held.move_to_end(key)
                return held[1]
        text = make(path, url)
        if self.clock() - max(found.st_mtime_ns, found.st_ctime_ns) > UNSETTLED_NS and len(text) <= self.mostBytes:
            self._keep(key, identity, text)
        return text

    def _keep(self, key, identity, text):
        with self._lock:
            old = self._held.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._held[key] = (identity, text)
            self._bytes += len(text)
            while self._bytes > self.mostBytes:
                _, (_, dropped) = self._held.popitem(last=False)
                self._bytes -= len(dropped)
