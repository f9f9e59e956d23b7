"""``twistd -n pacs`` with its index on a real MariaDB server through the
MySQL driver (MySQL = 1): the tests of tests.interop.databaseservers."""

from twisted.trial import unittest

from plugins.pacs_mysql import mysqlDriver
from tests.dbservers import MariaDBServer
from tests.interop.databaseservers import DatabaseCrash, IndexOnServer


class MySQLServerTests(IndexOnServer, unittest.TestCase):
    driver = mysqlDriver
    serverClass = MariaDBServer


class DatabaseCrashTests(DatabaseCrash, unittest.TestCase):
    driver = mysqlDriver
    serverClass = MariaDBServer
