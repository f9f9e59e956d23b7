"""What an error of the index database says, and what kind it is."""

import sqlite3

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from pacscore.db.filewatch import DatabaseFileLost

DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)  # "database disk image is malformed", "file is not a database"


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


def whileConnecting(error):
    """Whether SQLAlchemy's ``error`` came from opening a connection (no
    statement had run): a database server down, unknown or refusing the
    account."""
    return isinstance(error, DBAPIError) and error.statement is None
