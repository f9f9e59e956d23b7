"""Tests for pacscore.db.errors: which failures of the index database may pass."""

import sqlite3

import psycopg
import pymysql
from sqlalchemy import create_engine, text
from sqlalchemy.exc import (DataError, IntegrityError, InterfaceError, InternalError, OperationalError,
                            ProgrammingError)
from twisted.trial import unittest

from pacscore.db.errors import DISK_FULL, IndexTimeout, hasCode, isTransient
from pacscore.db.servers import DatabaseServerDriver


def sqliteError(message, code, kind=OperationalError):
    """SQLAlchemy's ``kind`` of SQLite's error ``code``, as a statement
    raises it."""
    original = sqlite3.OperationalError(message)
    original.sqlite_errorcode = code
    return kind("INSERT INTO DICOMWorkList ...", {}, original)


def postgresqlError(sqlstate, kind=OperationalError):
    return kind("INSERT INTO DICOMWorkList ...", {}, psycopg.errors.lookup(sqlstate)("failed"))


class TransientTests(unittest.TestCase):

    def test_aLockedSQLiteDatabase(self):
        """A real SQLite ``database is locked`` may pass."""
        path = self.mktemp()
        holder = sqlite3.connect(path)
        holder.execute("CREATE TABLE t (a)")
        holder.execute("BEGIN EXCLUSIVE")
        self.addCleanup(holder.close)
        engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
        self.addCleanup(engine.dispose)
        with self.assertRaises(OperationalError) as raised, engine.connect() as connection:
            connection.execute(text("SELECT * FROM t"))
        self.assertTrue(isTransient(raised.exception))

    def test_failuresThatMayPass(self):
        for error in (IndexTimeout(60), sqliteError("database is locked", sqlite3.SQLITE_BUSY),
                      sqliteError("database table is locked", sqlite3.SQLITE_LOCKED),
                      sqliteError("database or disk is full", sqlite3.SQLITE_FULL),
                      postgresqlError("08006"), postgresqlError("53100"), postgresqlError("57P01"),
                      postgresqlError("40P01"),
                      OperationalError(None, None, psycopg.OperationalError("connection refused")),
                      OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed"),
                                       connection_invalidated=True),
                      InterfaceError("SELECT 1", {}, psycopg.InterfaceError("the connection is closed")),
                      OperationalError("SELECT 1", {}, pymysql.err.OperationalError(2013, "Lost connection")),
                      OperationalError("SELECT 1", {}, pymysql.err.OperationalError(1205, "Lock wait timeout"))):
            self.assertTrue(isTransient(error), repr(error))

    def test_aReadOnlyDatabaseMayPass(self):
        """A database read-only for a while (a PostgreSQL standby during a
        failover, default_transaction_read_only during maintenance; MySQL's
        --read-only) was the message's own fault, its order sent to failed/:
        psycopg raises SQLSTATE 25006 as an InternalError.  The driver's
        code is now read whatever the exception class."""
        for error in (postgresqlError("25006", InternalError), postgresqlError("25006"),
                      InternalError("INSERT", {}, pymysql.err.InternalError(1290, "--read-only option")),
                      OperationalError("INSERT", {}, pymysql.err.OperationalError(1792, "READ ONLY transaction"))):
            self.assertTrue(isTransient(error), repr(error))

    def test_aMySQLServersErrorWithItsSQLSTATE(self):
        """PyMySQL gives a server's error the SQLSTATE of its error packet
        too (MySQL's own, HY000 for most): the error number is what tells
        it, not that SQLSTATE read as PostgreSQL's."""
        def mysqlError(code, sqlstate, message, kind=pymysql.err.OperationalError):
            return OperationalError("INSERT", {}, kind(code, message, sqlstate=sqlstate))
        for error in (mysqlError(1205, "HY000", "Lock wait timeout"),
                      mysqlError(1290, "HY000", "--read-only option", pymysql.err.InternalError),
                      mysqlError(1040, "08004", "Too many connections")):
            self.assertTrue(isTransient(error), repr(error))
        self.assertFalse(isTransient(mysqlError(1406, "22001", "Data too long", pymysql.err.DataError)))
        self.assertTrue(hasCode(mysqlError(1114, "HY000", "The table is full"), DISK_FULL))

    def test_failuresOfTheDataOrOfOurs(self):
        """What fails the same way every time is not transient: the data
        (an encoding, a value too long, a duplicate key) or a bug."""
        for error in (UnicodeEncodeError("latin-1", "\u674e", 0, 1, "ordinal not in range(256)"),
                      RuntimeError("database is locked"), ValueError("no"),
                      sqliteError("no such table: DICOMWorkList", sqlite3.SQLITE_ERROR),
                      sqliteError("UNIQUE constraint failed", sqlite3.SQLITE_CONSTRAINT, IntegrityError),
                      postgresqlError("22001", DataError), postgresqlError("23505", IntegrityError),
                      postgresqlError("42P01", ProgrammingError), postgresqlError("22021", DataError),
                      OperationalError("SELECT 1", {}, pymysql.err.OperationalError(1054, "Unknown column"))):
            self.assertFalse(isTransient(error), repr(error))


class MissingDatabaseTests(unittest.TestCase):
    """DatabaseServerDriver.missingDatabase: which failures to connect say
    that the database does not exist on its server."""

    def missing(self, error):
        driver = DatabaseServerDriver()
        driver.label, driver.createCommand = "test", "createdb {database}"
        return driver.missingDatabase(error, create_engine("postgresql://pacs@db/conquest").url)

    def test_aDatabaseThatDoesNotExist(self):
        for error in (postgresqlError("3D000"),
                      OperationalError("connect", {}, psycopg.OperationalError(
                          'connection failed: FATAL:  database "conquest" does not exist')),
                      OperationalError("connect", {}, pymysql.err.OperationalError(1049, "Unknown database",
                                                                           sqlstate="42000"))):
            self.assertEqual(self.missing(error), "the database conquest does not exist on the test server: create "
                             "it (createdb conquest), or correct SQLServer in dicom.ini (or --db)")

    def test_otherFailures(self):
        for error in (postgresqlError("08006"), sqliteError("database is locked", sqlite3.SQLITE_BUSY),
                      OperationalError("connect", {}, pymysql.err.OperationalError(2003, "Can't connect"))):
            self.assertIsNone(self.missing(error))
