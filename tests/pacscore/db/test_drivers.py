"""redacted: the password of a database or DICOMweb server URL hidden as
urlsplit (which the STOW-RS forwarder uses) and SQLAlchemy read it."""

from urllib.parse import urlsplit

from twisted.trial import unittest

from pacscore.db.drivers import redacted


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
