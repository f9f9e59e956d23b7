"""Conquest's Mail* keys against a running ``twistd -n pacs``: an error
the server logs (an import converter's Lua script failing on every
object storescu sends) reaches a mail server as one mail per
MailCollectTime (aiosmtpd as the mail server)."""

import email
from email import policy

from aiosmtpd.controller import Controller
from pydicom.data import get_testdata_file
from twisted.trial import unittest

from tests.interop.server import PacsServer, freePort
from tests.interop.test_forwarding import waitFor


class Inbox:
    """An aiosmtpd handler keeping each mail as ``(helo, sender,
    recipients, data)``."""

    def __init__(self):
        self.mails = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append((session.host_name, envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 Message accepted for delivery"


class ErrorMailTests(unittest.TestCase):

    def setUp(self):
        self.inbox = Inbox()
        self.smtp = Controller(self.inbox, hostname="127.0.0.1", port=freePort())
        self.smtp.start()
        self.addCleanup(self.smtp.stop)

    def test_errorsAreMailed(self):
        server = PacsServer(self.mktemp(), ini={
            "MailHost": "127.0.0.1", "MailPort": str(self.smtp.port), "MailSignon": "pacs.test",
            "MailFromName": "pacs@test", "MailRcptName1": "ops@test", "MailRcptName2": "admin@test",
            "MailCollectTime": "0", "ImportConverters": "1", "ImportConverter0": "lua \"error('boom')\""})
        server.start()
        self.addCleanup(server.stop)
        self.assertIn("error messages are mailed to ops@test, admin@test through 127.0.0.1", server.log())
        server.store(get_testdata_file("CT_small.dcm"))
        waitFor(lambda: self.inbox.mails, message="the mail")
        helo, sender, recipients, data = self.inbox.mails[0]
        self.assertEqual((helo, sender, recipients), ("pacs.test", "pacs@test", ["ops@test", "admin@test"]))
        mail = email.message_from_bytes(data, policy=policy.default)
        self.assertRegex(mail["Subject"], r"^pacs PACS: \d+ error messages?$")
        self.assertIn("ImportConverter0: Lua script failed", mail.get_content())
        waitFor(lambda: "error message(s) mailed to ops@test, admin@test" in server.log(), message="the log line")
