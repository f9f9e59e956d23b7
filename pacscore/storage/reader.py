"""Reading stored objects back for sending (C-MOVE, C-GET, forwarding).

Blocking: call these in the I/O pool.  ``locate`` reads only each file's
Part-10 header (its transfer syntax and where the data set starts), so a
retrieve can negotiate before it reads any pixel; ``read`` then returns one
object's data set bytes exactly as stored.
"""

import os
from typing import NamedTuple

from pacscore.storage.attributes import DatasetError, walkDataset
from pacscore.storage.part10 import readFileMeta


class StoredObject(NamedTuple):
    """One object on a MAG device, ready to be read."""

    sopInstanceUID: str
    sopClassUID: str
    path: str
    transferSyntax: str
    datasetOffset: int
    size: int


class Missing(NamedTuple):
    """An indexed object whose file cannot be read."""

    sopInstanceUID: str
    reason: str


class ObjectReader:
    """Finds and reads the files of indexed objects on the MAG devices."""

    def __init__(self, devices):
        self.roots = {device.name: device.path for device in devices}

    def path(self, deviceName, objectFile):
        """The absolute path of a file named in the index."""
        root = self.roots.get(deviceName)
        if root is None:
            raise OSError(f"no MAG device {deviceName!r}")
        return os.path.join(root, *objectFile.split("/"))

    def fileError(self, deviceName, objectFile):
        """Why the file an index row names is unusable (missing, not Part-10,
        truncated or damaged data set), or None when it reads to its end."""
        try:
            with open(self.path(deviceName, objectFile), "rb") as f:
                syntax, _, offset = readFileMeta(f)
                f.seek(offset)
                walkDataset(f, syntax, frozenset(), 0, 0xFFFFFFFF)
        except (OSError, DatasetError) as e:
            return str(e) or type(e).__name__
        return None

    def locate(self, instances):
        """``StoredObject`` or ``Missing`` for each ``pacscore.db.query.Instance``."""
        found = []
        for instance in instances:
            try:
                path = self.path(instance.deviceName, instance.objectFile)
                with open(path, "rb") as f:
                    syntax, meta, offset = readFileMeta(f)
                    size = os.fstat(f.fileno()).st_size
            except (OSError, DatasetError) as e:
                found.append(Missing(instance.sopInstanceUID, f"{instance.objectFile}: {e}"))
                continue
            found.append(StoredObject(instance.sopInstanceUID, instance.sopClassUID, path, syntax,
                                      offset, size))
        return found

    def read(self, stored):
        """The data set bytes of a ``StoredObject``."""
        with open(stored.path, "rb") as f:
            f.seek(stored.datasetOffset)
            return f.read()
