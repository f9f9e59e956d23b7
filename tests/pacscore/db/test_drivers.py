"""findDriver: the driver dicom.ini selects among the installed ones, a
broken one left out; redacted: the password of a database or DICOMweb
server URL hidden as urlsplit (which the STOW-RS forwarder uses) and
SQLAlchemy read it."""

import textwrap
from urllib.parse import urlsplit

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial import unittest

from pacscore.db import drivers
from pacscore.db.drivers import findDriver, redacted
from pacscore.pluginset import PluginSet
from plugins.pacs_sqlite import sqliteDriver
from tests.pacscore.test_pluginset import errors, pluginPackage
from tests.plugins.test_sqlite_driver import FakeConfiguration


class FindDriverTests(unittest.TestCase):

    def installed(self, source):
        """Make the installed plugins those of a plugin module of
        ``source`` (after tests.pacscore.test_pluginset.HEADER), which
        holds the built-in SQLite driver too."""
        package = pluginPackage(self, drivers="from plugins.pacs_sqlite import SQLiteDriver, sqliteDriver\n"
                                + textwrap.dedent(source))
        self.patch(drivers, "installed", PluginSet(package))
        return package

    def test_failingSelectedByIsLeftOut(self):
        """A driver whose selectedBy raises (a key it assumes dicom.ini has)
        is logged once with the error and not chosen; the others are
        tried."""
        package = self.installed("""
            class Bad(SQLiteDriver):
                name = "aaabad"
                def selectedBy(self, configuration): raise KeyError("AAABad")
            bad = Bad()
            """)
        with capturedLogs() as events:
            self.assertEqual(findDriver(None, FakeConfiguration("/srv/pacs"))[0], sqliteDriver)
        self.assertEqual(errors(events), [
            f"plugin {package.__name__}.drivers.Bad: selectedBy failed; it is not available"])
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertIsInstance(event["log_failure"].value, KeyError)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_secondDriverOfANameIsLeftOut(self):
        """A driver named as one found before it (in any case) is left out
        with one line, as commands are, not used in its stead."""
        package = self.installed("""
            class Twin(SQLiteDriver):
                name = "SQLite"
            twin = Twin()
            """)
        with capturedLogs() as events:
            self.assertEqual(findDriver("sqlite:x.db3", FakeConfiguration("/srv/pacs")), (sqliteDriver, "sqlite:x.db3"))
        self.assertEqual(errors(events), [
            f"plugin {package.__name__}.drivers.Twin is an IDatabaseDriver named 'sqlite' as "
            f"plugins.pacs_sqlite.SQLiteDriver (in {package.__name__}.drivers) is; it is not available"])

    def test_askedForWinsOverSQLite(self):
        """A driver that dicom.ini asks for with its own key is used rather
        than the SQLite default, which accepts it too, whatever their names'
        order; the line names both and the one used.  Without the key,
        SQLite is used with no line."""
        package = self.installed("""
            class Z(SQLiteDriver):
                name = "zsql"
                def selectedBy(self, configuration): return configuration.ini.get("ZSQL") == "1"
            z = Z()
            """)
        with capturedLogs() as events:
            self.assertIs(findDriver(None, FakeConfiguration("/srv/pacs", ZSQL=1))[0], package.drivers.z)
        self.assertEqual([formatEvent(event) for event in events], [
            "the database drivers sqlite, zsql accept dicom.ini: zsql is used (sqlite only when no other does, "
            "else the first by name)"])
        self.assertEqual(events[0]["log_level"], LogLevel.info)
        with capturedLogs() as events:
            self.assertIs(findDriver(None, FakeConfiguration("/srv/pacs"))[0], sqliteDriver)
        self.assertEqual(events, [])

    def test_severalAskedForWarned(self):
        """Of two drivers that dicom.ini asks for, the first by name is used,
        with a warning naming them."""
        package = self.installed("""
            class Z(SQLiteDriver):
                name = "zsql"
                def selectedBy(self, configuration): return configuration.ini.get("ZSQL") == "1"
            class Y(Z):
                name = "ysql"
            z, y = Z(), Y()
            """)
        with capturedLogs() as events:
            self.assertIs(findDriver(None, FakeConfiguration("/srv/pacs", ZSQL=1))[0], package.drivers.y)
        self.assertEqual(errors(events), [
            "the database drivers sqlite, ysql, zsql accept dicom.ini: ysql is used (sqlite only when no other "
            "does, else the first by name)"])


class RedactedTests(unittest.TestCase):

    def test_passwordsWithAt(self):
        """All of a password holding ``@`` is hidden: up to the last ``@``
        before the path, as urlsplit takes it."""
        for url, shown in (
                ("http://router:S3cret@Tail@orthanc.example:8042/dicom-web",
                 "http://router:***@orthanc.example:8042/dicom-web"),
                ("postgresql://u:s3cr@t@db/x", "postgresql://u:***@db/x"),
                ("postgresql://u:s3cr@t@db", "postgresql://u:***@db"),
                ("postgresql://u:a:b@c@db/x?sslmode=require", "postgresql://u:***@db/x?sslmode=require"),
                ("http://a@b:pw@host/x@y", "http://a@b:***@host/x@y"),
                ("https://u:pw@host/dicomweb?next=http://v:other@elsewhere/",
                 "https://u:***@host/dicomweb?next=http://v:***@elsewhere/")):
            self.assertEqual(redacted(url), shown)
            password = urlsplit(url).password
            self.assertNotIn(password, redacted(url), url)

    def test_nothingToHide(self):
        for text in ("postgresql://pacs@localhost/conquest", "http://orthanc.example:8042/dicom-web",
                     "http://user@host:8042/x", "sqlite:./data/dbase/conquest.db3", "a:b@c", ""):
            self.assertEqual(redacted(text), text)
        self.assertEqual(redacted("postgresql://pacs:p%40ss@localhost/conquest"),
                         "postgresql://pacs:***@localhost/conquest")
