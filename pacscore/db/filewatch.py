"""Noticing the index's database file deleted or replaced while pacs runs.

SQLite keeps writing into the file it opened: deleted (the operator removed
``conquest.db3`` with its ``-wal`` and ``-shm`` to start afresh) or renamed
away, it still takes every commit, and what is stored is lost with the
last descriptor.  ``DatabaseFileWatch`` compares the file at the path with
the one the server started with, after every commit of the index writer;
once they differ, it says so in one log line and fails every later write
until pacs restarts.
"""

import os

from twisted.logger import Logger


class DatabaseFileLost(Exception):
    """The index database file is no longer the one pacs writes to."""


class DatabaseFileWatch:
    """The database file at ``path``: ``start`` remembers it, ``check``
    raises ``DatabaseFileLost`` once the path holds another file or none."""

    log = Logger()

    def __init__(self, path):
        self.path = path
        self._identity = None
        self._lost = None  # the DatabaseFileLost, once noticed

    def start(self):
        """Remember the file the server uses (the one at the path now)."""
        self._identity = self._identityNow()

    def check(self):
        """Raise ``DatabaseFileLost`` if the file was deleted or replaced
        since ``start`` (logged the first time)."""
        if self._lost is None and self._identityNow() != self._identity:
            self._lost = DatabaseFileLost(f"the index database {self.path} was deleted or replaced while pacs runs")
            self.log.error("{error}: stores fail until pacs is restarted (then 'dgate -r' indexes the objects "
                           "stored since)", error=self._lost)
        if self._lost is not None:
            raise self._lost

    def _identityNow(self):
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        return status.st_dev, status.st_ino
