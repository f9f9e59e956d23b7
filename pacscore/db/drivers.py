"""Choosing the database driver plugin, as twisted.cred's strcred picks a
checker factory: by the scheme of ``--db SCHEME:...`` or by dicom.ini,
where a driver the ini asks for wins over the SQLite default."""

import os
import re

from twisted.logger import Logger, LogLevel

from pacscore.interfaces import IDatabaseDriver
from pacscore.pluginset import installed, named

log = Logger()

FALLBACK = "sqlite"
"""The driver that accepts every dicom.ini asking for no other database
(Conquest's stock one has ``SQLite = 1``): used only when no other
driver accepts it."""


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
        log.failure("plugin {plugin}: selectedBy failed; it is not available", level=LogLevel.error,
                    plugin=named(driver))
        return False


def findDriver(description, configuration):
    """``(driver, description)`` for ``--db description``, or with None the
    driver that the dicom.ini selects, with the description built from
    dicom.ini: the first by name of those that accept it, the fallback
    only when no other does (logged when several accept).  ``ValueError``
    when nothing matches."""
    drivers = availableDrivers()
    names = ", ".join(d.name for d in drivers) or "none"
    if description is None:
        accepting = [driver for driver in drivers if _selects(driver, configuration)]
        preferred = [driver for driver in accepting if driver.name != FALLBACK] or accepting
        if not preferred:
            raise ValueError(f"dicom.ini selects no database driver (available: {names})")
        driver = preferred[0]
        if len(accepting) > 1:
            log.emit(LogLevel.warn if len(preferred) > 1 else LogLevel.info,
                     "the database drivers {accepting} accept dicom.ini: {driver} is used "
                     "({fallback} only when no other does, else the first by name)",
                     accepting=", ".join(d.name for d in accepting), driver=driver.name, fallback=FALLBACK)
        return driver, driver.urlFromConfiguration(configuration)
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
