"""Choosing the database driver plugin, as twisted.cred's strcred picks a
checker factory: by the scheme of ``--db SCHEME:...`` or by dicom.ini."""

import os
import re

from twisted.logger import Logger

from pacscore.interfaces import IDatabaseDriver
from pacscore.pluginset import installed, named

log = Logger()


def availableDrivers():
    """Every usable installed ``IDatabaseDriver`` plugin, sorted by name."""
    return sorted(installed.providing(IDatabaseDriver), key=lambda d: d.name)


def databaseFiles(driver, description, configuration):
    """The real paths of the files of a database kept in local files
    (SQLite: the file, its -wal, -shm and -journal), else empty.  Nothing
    else of the process may open them: closing any descriptor of a file
    drops every POSIX lock the process holds on it, SQLite's included."""
    pathOf = getattr(driver, "pathOf", None)
    if pathOf is None:
        return frozenset()
    path = pathOf(description, configuration)
    return frozenset(os.path.realpath(path + suffix) for suffix in ("", "-wal", "-shm", "-journal"))


def namesNoDatabase(configuration):
    """Whether dicom.ini asks for no index: ``SQLServer`` present and empty
    (Conquest's NULL driver, whatever the PostGres/MySQL/SQLite flags)."""
    server = configuration.ini.get("SQLServer")
    return server is not None and not server.strip()


def _selects(driver, configuration):
    """Whether ``driver`` is selected by the dicom.ini of ``configuration``;
    a driver whose ``selectedBy`` fails is logged and is not."""
    try:
        return driver.selectedBy(configuration)
    except Exception:
        log.failure("plugin {plugin}: selectedBy failed; it is not available", plugin=named(driver))
        return False


def findDriver(description, configuration):
    """``(driver, description)`` for ``--db description``, or with None the
    first driver (by name) that the dicom.ini selects, with the description
    built from dicom.ini.  ``ValueError`` when nothing matches."""
    drivers = availableDrivers()
    names = ", ".join(d.name for d in drivers) or "none"
    if description is None:
        for driver in drivers:
            if _selects(driver, configuration):
                return driver, driver.urlFromConfiguration(configuration)
        raise ValueError(f"dicom.ini selects no database driver (available: {names})")
    scheme = description.partition(":")[0]
    for driver in drivers:
        if driver.name == scheme:
            return driver, description
    raise ValueError(f"Unknown database driver {scheme!r} in --db {description!r} "
                     f"(available: {names})")


def redacted(description):
    """``description`` for logs and output: the password of a URL
    (``scheme://user:password@host/...``) replaced by ``***``; as urlsplit
    reads it, up to the last ``@`` of the host part (a password may hold
    ``@``) and from the first ``:`` of the user part."""
    return re.sub(r"(://[^/?#:]*:)[^/?#]*@", r"\1***@", description)
