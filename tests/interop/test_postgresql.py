"""``twistd -n pacs`` with its index on a real PostgreSQL server (PostGres = 1):
the tests of tests.interop.databaseservers."""

from twisted.trial import unittest

from plugins.pacs_postgresql import postgresqlDriver
from tests.dbservers import PostgresServer
from tests.interop.databaseservers import DatabaseCrash, IndexOnServer


class PostgreSQLServerTests(IndexOnServer, unittest.TestCase):
    driver = postgresqlDriver
    serverClass = PostgresServer


class DatabaseCrashTests(DatabaseCrash, unittest.TestCase):
    driver = postgresqlDriver
    serverClass = PostgresServer
