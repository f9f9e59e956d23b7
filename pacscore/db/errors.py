"""What an error of the index database says, and what kind it is."""

import sqlite3

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from pacscore.db.filewatch import DatabaseFileLost

DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)  # "database disk image is malformed", "file is not a database"
# Failures that may pass (``isTransient``): SQLite's primary result codes busy, locked, full, I/O error, cannot open;
SQLITE_TRANSIENT = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR,
                    sqlite3.SQLITE_CANTOPEN)
# PostgreSQL's SQLSTATE classes connection exception, transaction rollback (deadlock, serialization),
# insufficient resources (disk full, out of memory, too many connections), operator intervention (shutdown);
POSTGRESQL_TRANSIENT = ("08", "40", "53", "57")
# MySQL's and MariaDB's error numbers: disk or table full, too many connections, shutdown, lock wait timeout,
# deadlock, cannot connect, server gone away, connection lost, connection killed, disconnected when idle.
MYSQL_TRANSIENT = frozenset((1021, 1114, 1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 1927, 4031))


class IndexTimeout(Exception):
    """The index database did not answer within the time limit (SQLTimeOut)."""

    def __init__(self, seconds):
        super().__init__(f"the index database did not answer within {seconds:g} s (SQLTimeOut)")


# The index database failing (down, locked, damaged, hung, its file lost), not a bug of ours: one log line.
DATABASE_FAILURES = (SQLAlchemyError, IndexTimeout, DatabaseFileLost)


def databaseMessage(error):
    """The database's own message of ``error`` on one line: a SQLAlchemy
    error's DBAPI error (``orig``), without the SQL and its parameters."""
    return " ".join(str(getattr(error, "orig", None) or error).split())


def isDamaged(error):
    """Whether SQLAlchemy's ``error`` says that an SQLite file is damaged."""
    return isinstance(error, DBAPIError) and getattr(error.orig, "sqlite_errorcode", None) in DAMAGED


def isTransient(error):
    """Whether ``error`` is a failure of the index database that may pass
    (a later attempt may succeed): SQLTimeOut, its file lost, a connection
    refused or lost, SQLite locked, busy or full, or a PostgreSQL or MySQL
    error of ``POSTGRESQL_TRANSIENT`` or ``MYSQL_TRANSIENT``.  Anything
    else (a value the database refuses, a duplicate key, a bug) fails the
    same way every time."""
    if isinstance(error, (IndexTimeout, DatabaseFileLost, InterfaceError)):
        return True
    if not isinstance(error, OperationalError):
        return False
    if error.connection_invalidated or whileConnecting(error):
        return True
    original = error.orig
    if hasattr(original, "sqlite_errorcode"):
        return original.sqlite_errorcode & 0xFF in SQLITE_TRANSIENT
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2] in POSTGRESQL_TRANSIENT
    code = original.args[0] if original.args else None  # MySQL's drivers: (code, message)
    return code in MYSQL_TRANSIENT


def whileConnecting(error):
    """Whether SQLAlchemy's ``error`` came from opening a connection (no
    statement had run): a database server down, unknown or refusing the
    account."""
    return isinstance(error, DBAPIError) and error.statement is None
