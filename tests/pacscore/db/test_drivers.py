"""findDriver: the driver dicom.ini selects among the installed ones, a
broken one left out; redacted: the password of a database or DICOMweb
server URL hidden as urlsplit (which the STOW-RS forwarder uses) and
SQLAlchemy read it."""

import textwrap
from urllib.parse import urlsplit

from twisted.logger import capturedLogs
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
        self.assertIsInstance(event["log_failure"].value, KeyError)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)


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
