"""The ``dgate`` options that work on the working folder's configuration
without a server (-i, -r, -d, -m, -k, -f?, -j/-n; -i and -r refuse while
it runs, see ``checkNoServer``, and hold the working folder's lock, as a
server does, while they run): imported only for them,
so that sending a ``--command`` does not load the index, storage and
pydicom modules."""

import os

import pydicom
from sqlalchemy.exc import SQLAlchemyError

from pacscore.codecs.syntaxes import SUPPORTED_CODES, isSupportedCode
from pacscore.codecs.transcode import TranscodeError
from pacscore.config.dicomsql import TABLES
from pacscore.control.amap import nodeLine
from pacscore.control.definitions import columnLine
from pacscore.control.liveserver import runningServer
from pacscore.db.drivers import databaseFiles, findDriver, redacted
from pacscore.db.index import Index
from pacscore.storage.attributes import DatasetError
from pacscore.storage.devices import MagDevice
from pacscore.storage.mirror import Mirrors
from pacscore.storage.recompression import recompressedFile
from pacscore.storage.regen import MissingDeviceError, Regenerator, checkDeviceFolders
from pacscore.workfolderlock import LockError, WorkFolderLock


_COLUMN_LISTING = "0x%04x 0x%04x %s %d %s %s"  # -k's columns (get_sqldef's default is Conquest's, padded)


class OfflineError(Exception):
    """-i or -r could not be carried out."""


def openIndex(driver, description, configuration):
    engine = driver.createEngine(description, configuration)
    return Index(engine, configuration.layout, configuration.tableNames, writerThreads=driver.writerThreads,
                 allowTruncate=configuration.allowTruncate, truncateFieldNames=configuration.truncateFieldNames,
                 onTablesBuilt=getattr(driver, "indexTablesBuilt", None),
                 schemaTransaction=getattr(driver, "schemaTransaction", None))


def initialize(configuration, out, regenerating=()):
    """Drop and create the image tables, marking the devices named in
    ``regenerating`` as being regenerated (``RegenMarks``).  Damaged
    database files (where the driver can tell) are first set aside for a
    new database, so that -r can always rebuild the index from the stored
    files."""
    driver, description = findDriver(None, configuration)
    index = openIndex(driver, description, configuration)
    damage = getattr(driver, "damage", None)
    problem = damage(index.engine) if damage is not None else None
    if problem is not None:
        index.engine.dispose()
        kept = driver.setAside(description, configuration)
        out(f"The index database is damaged ({problem}); it is kept as {kept}, and a new one is made "
            f"(its worklist and export queue, if any, stay in the damaged copy)")
        index = openIndex(driver, description, configuration)
    out(f"Initialising the index tables in {redacted(description)}")
    index.initializeTables(regenerating=regenerating)
    return index, databaseFiles(driver, description, configuration)


def regenerate(configuration, out):
    if not getattr(findDriver(None, configuration)[0], "keepsIndex", True):
        raise OfflineError("-r: SQLServer is empty, which selects the NULL driver: it keeps no index to "
                           "regenerate (give SQLServer a database first)")
    devices = [MagDevice(name, path) for name, path in configuration.magDevices]
    try:
        checkDeviceFolders(devices)
    except MissingDeviceError as e:
        raise OfflineError(f"-r: {e}") from None
    names = [device.name for device in devices]
    index, skip = initialize(configuration, out, names)
    regenerator = Regenerator(index, configuration.layout.indexedTags(), devices, report=out, skip=skip,
                              mirrors=Mirrors.fromConfiguration(configuration))
    regenerator.regenerate(devices)
    with index.engine.begin() as connection:  # complete: killed before this, the next start runs it again
        index.regens.unmark(connection, names)
    return regenerator


def listDevices(configuration, out):
    for name, path in configuration.magDevices + configuration.mirrorDevices:
        out(f"{name:<10} {path}")


def listAeMap(configuration, out):
    for node in configuration.acrNemaMap.nodes:
        out(nodeLine(node))


def listDatabase(configuration, out):
    layout, names = configuration.layout, configuration.tableNames
    for level in TABLES:
        out(f"{names[level]}:")
        for column in getattr(layout, level):
            out(f"    {columnLine(column, _COLUMN_LISTING)} {column.hl7 or ''}".rstrip())


def printUID(configuration, out, path):
    try:
        dataset = pydicom.dcmread(configuration.resolvePath(path), stop_before_pixels=True, force=True)
    except Exception as e:  # a damaged file surfaces as any exception
        raise OSError(f"{path}: {e}") from e
    if "SOPInstanceUID" not in dataset:
        raise OSError(f"{path} has no SOP Instance UID")
    out(str(dataset.SOPInstanceUID))


def recompressFile(configuration, out, argument):
    """Convert a file in place (written to a temporary file, flushed,
    renamed); OfflineError for an unknown compression code, which a server
    takes as "as" (a typo would say "left as it is")."""
    code, path = argument.split(",", 1)
    if not isSupportedCode(code):
        raise OfflineError(f"-j/-n: {code!r} is not a compression code (one of {', '.join(sorted(SUPPORTED_CODES))})")
    path = configuration.resolvePath(path)
    with open(path, "rb") as f:
        content = f.read()
    try:
        converted, source, target = recompressedFile(content, code, configuration.lossyQuality)
    except (TranscodeError, DatasetError) as e:
        raise OSError(f"{path}: {e}") from e
    if converted is content:
        out(f"{path}: left as it is ({source})")
        return
    temporary = f"{path}.pacs-tmp"
    with open(temporary, "wb") as f:
        f.write(converted)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    out(f"{path}: {source} -> {target}" if target != source else f"{path}: {code} applied ({target})")


# the options that drop and recreate the index tables, and the command that has the server do so
REBUILDS = {"i": "--initializetables:", "r": "--regen:"}


def checkNoServer(action, configuration, out):
    """OfflineError when ``action`` rebuilds the index tables and the
    working folder's server is running: that would happen under it.  A
    ``ControlEndpoint`` that gives no address to ask (port 0: the server
    listens on any free port) leaves it to the working folder's lock,
    said in a line to ``out``."""
    if action not in REBUILDS:
        return
    try:
        label = runningServer(configuration)
    except ValueError as e:
        out(f"-{action}: ControlEndpoint gives no address to ask whether the server runs ({e}); "
            f"the working folder's lock tells instead")
        return
    if label is not None:
        raise OfflineError(f"-{action}: the server of this working folder is running (its control port {label} "
                           f"answers); -{action} would drop and recreate the index tables under it: stop it first, "
                           f"or have it do so: dgate {REBUILDS[action]}")


OFFLINE = {"i": initialize, "r": regenerate, "d": listDevices, "m": listAeMap, "k": listDatabase, "f?": printUID,
           "j": recompressFile}


def offline(actions, configuration, out):
    """-i, -r and the listings, in the order given; OfflineError when one
    fails (the index cannot be opened or written, a file not read, the
    tables to be rebuilt under a running server)."""
    for action, _ in actions:
        checkNoServer(action, configuration, out)
    lock = WorkFolderLock.of(configuration)  # a server whose control port is off or not yet up, a dgate -r
    try:
        for action, argument in actions:
            if action in REBUILDS:
                lock.acquire()
            OFFLINE[action](configuration, out, *([argument] if argument else []))
    except LockError as e:
        raise OfflineError(f"-{action}: {e}") from e
    except (OSError, SQLAlchemyError) as e:
        raise OfflineError(f"-{action} failed: {getattr(e, 'orig', None) or e}") from e
    finally:
        lock.release()
