"""What an error of the index database says, and what kind it is."""

import sqlite3

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from pacscore.db.filewatch import DatabaseFileLost

# The codes of the index database's drivers, by what they say: SQLite's primary result codes, PostgreSQL's
# SQLSTATEs (a class of two characters stands for all of its codes), MySQL's and MariaDB's error numbers.
# A damaged SQLite file: "database disk image is malformed", "file is not a database".
DAMAGED = {"sqlite": (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)}
# A full disk or table: SQLite's "database or disk is full", PostgreSQL's disk_full, MySQL's ER_DISK_FULL and
# ER_RECORD_FILE_FULL ("The table ... is full").
DISK_FULL = {"sqlite": (sqlite3.SQLITE_FULL,), "postgresql": ("53100",), "mysql": (1021, 1114)}
# A database that does not exist on its server: PostgreSQL's invalid_catalog_name, MySQL's ER_BAD_DB_ERROR
# ("Unknown database").
NO_DATABASE = {"postgresql": ("3D000",), "mysql": (1049,)}
# Failures that may pass (``isTransient``): SQLite busy, locked, full, I/O error, cannot open; PostgreSQL's
# classes connection exception, invalid transaction state (a read-only database: a standby, maintenance),
# transaction rollback (deadlock, serialization), insufficient resources (disk full, out of memory, too many
# connections), operator intervention (shutdown); MySQL's disk or table full, too many connections, shutdown,
# lock wait timeout, deadlock, cannot connect, server gone away, connection lost, connection killed,
# disconnected when idle, read-only (--read-only, a READ ONLY transaction).
TRANSIENT = {"sqlite": (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR,
                        sqlite3.SQLITE_CANTOPEN),
             "postgresql": ("08", "25", "40", "53", "57"),
             "mysql": (1021, 1114, 1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 1927, 4031, 1290, 1792)}


class IndexTimeout(Exception):
    """The index database did not answer within the time limit (SQLTimeOut);
    ``queued``: the write was still waiting for the index writer, busy
    with a longer write of this server (a delete, maintenance), which may
    itself be waiting on the database."""

    def __init__(self, seconds, queued=False):
        super().__init__(f"the index writer did not get to it within {seconds:g} s (SQLTimeOut): it was busy "
                         f"with a longer write of this server (a delete, maintenance) or waiting on the database"
                         if queued else
                         f"the index database did not answer within {seconds:g} s (SQLTimeOut)")


class IndexStopped(RuntimeError):
    """The index takes no request: not started yet, or stopping (pacs
    stopping: its writer takes no more writes)."""


class ValueTooLarge(Exception):
    """A value larger than the index database's server takes in one
    statement (MySQL's max_allowed_packet: it drops the connection on it)."""

    def __init__(self, size, limit):
        super().__init__(f"{size} bytes, more than the database server's max_allowed_packet of {limit} bytes "
                         "takes in one statement")


# The index database failing (down, locked, damaged, hung, its file lost, a value too large for it), not a bug of
# ours: one log line.
DATABASE_FAILURES = (SQLAlchemyError, IndexTimeout, DatabaseFileLost, ValueTooLarge)


def databaseMessage(error):
    """The database's own message of ``error`` on one line: a SQLAlchemy
    error's DBAPI error (``orig``), without the SQL and its parameters."""
    return " ".join(str(getattr(error, "orig", None) or error).split())


def hasCode(error, table):
    """Whether ``error`` is SQLAlchemy's ``DBAPIError`` (of any class)
    whose driver's code is one of ``table`` (driver: codes)."""
    if not isinstance(error, DBAPIError) or error.orig is None:
        return False
    original = error.orig
    if hasattr(original, "sqlite_errorcode"):
        return original.sqlite_errorcode & 0xFF in table.get("sqlite", ())
    code = original.args[0] if original.args else None
    if isinstance(code, int):  # MySQL's drivers: (code, message), PyMySQL with a SQLSTATE of MySQL's own too
        return code in table.get("mysql", ())
    sqlstate = getattr(original, "sqlstate", None)
    return bool(sqlstate) and (sqlstate in table.get("postgresql", ()) or sqlstate[:2] in table.get("postgresql", ()))


def isDamaged(error):
    """Whether SQLAlchemy's ``error`` says that an SQLite file is damaged."""
    return hasCode(error, DAMAGED)


def isTransient(error):
    """Whether ``error`` is a failure of the index database that may pass
    (a later attempt may succeed): SQLTimeOut, its file lost, a connection
    refused or lost, or a driver's code of ``TRANSIENT`` (SQLite locked,
    busy or full, PostgreSQL read-only or restarting...).  Anything else
    (a value the database refuses, a duplicate key, a bug) fails the same
    way every time."""
    if isinstance(error, (IndexTimeout, DatabaseFileLost, InterfaceError)):
        return True
    if isinstance(error, OperationalError) and (error.connection_invalidated or whileConnecting(error)):
        return True
    return hasCode(error, TRANSIENT)


def whileConnecting(error):
    """Whether SQLAlchemy's ``error`` came from opening a connection (no
    statement had run): a database server down, unknown or refusing the
    account."""
    return isinstance(error, DBAPIError) and error.statement is None
