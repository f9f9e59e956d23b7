"""Error messages by email, as Conquest's ``Mail*`` keys of dicom.ini
configure it ("Configure email of error messages").

With ``MailHost`` and at least one ``MailRcptName1`` ... set, every event
the server logs at level error or critical (a failed store, an export
that gave up, a Lua script that failed ...) is collected for
``MailCollectTime`` minutes (0: sent at once), then sent as one mail over
SMTP (``MailPort``, default 25, a number or a service name such as
``smtp``, as Conquest looks it up; ``MailSignon`` the name pacs greets the
mail server with; ``MailFromName`` the sender, default
``pacs@<host name>``) to every recipient.  A mail holds at most
``MOST_LINES`` lines and says how many more there were.  The SMTP exchange
may take ``MailWaitTime`` seconds; a mail that cannot be sent is logged
as a warning (which is not mailed) and dropped.  What is still collected
when pacs stops is sent before it ends (the service tree stops this
service after the others, so their errors while they stop are in it).
"""

import functools
import re
import socket
import time
from email.message import EmailMessage
from email.utils import formatdate

from twisted.application import service
from twisted.internet import task
from twisted.logger import LogLevel, Logger, formatEvent, globalLogPublisher

from pacscore.config.errors import ConfigError
from pacscore.hostport import hostPort
from pacscore.smtpsend import sendMail

MOST_LINES = 200
MAILED_LEVELS = (LogLevel.error, LogLevel.critical)
_RECIPIENT_KEY = re.compile(r"MailRcptName(\d+)$", re.IGNORECASE)


def recipientsFrom(ini):
    """The addresses of ``MailRcptName1`` ... in number order, empty ones left out."""
    numbered = []
    for key, value in ini.items():
        match = _RECIPIENT_KEY.match(key)
        if match and value.strip():
            numbered.append((int(match.group(1)), value.strip()))
    return [address for _, address in sorted(numbered)]


def eventText(event):
    """The text of a log event, with the error message of its failure if any."""
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text += f": {failure.getErrorMessage()}"
    return text


def eventLine(event):
    """One line of the mail for a log event: its time, system and text."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.get("log_time", time.time())))
    return f"{when} [{event.get('log_namespace', '-')}] {eventText(event)}"


def _port(ini):
    """``MailPort``: a number, or a TCP service name (``smtp``) looked up as
    Conquest's ``Socket::Open`` does; ConfigError naming the line for a
    name no service has."""
    value = ini.get("MailPort", "").strip()
    if not value[:1].isalpha():
        return ini.getint("MailPort", 25)
    try:
        return socket.getservbyname(value, "tcp")
    except OSError:
        raise ConfigError(ini.path, ini.lineOf("MailPort"),
                          f"MailPort = {value}: no TCP service of that name, give a port number") from None


class ErrorMail(service.Service):
    """See the module docstring.  ``send(host, sender, recipients, message,
    senderDomainName, port)``, ``twisted.mail.smtp.sendmail``'s form, sends
    a mail (default: ``sendMail`` on ``reactor``, which reaches a mail
    server by its IPv6 addresses too)."""

    log = Logger()

    def __init__(self, reactor, host, recipients, port=25, signon=None, sender=None, collectMinutes=1,
                 waitSeconds=10, name="pacs", publisher=globalLogPublisher, send=None):
        self.reactor = reactor
        self.host = host
        self.recipients = list(recipients)
        self.port = port
        self.signon = signon or socket.getfqdn()
        self.sender = sender or f"pacs@{socket.getfqdn()}"
        self.collectSeconds = collectMinutes * 60
        self.waitSeconds = waitSeconds
        self.name = name
        self.publisher = publisher
        self.send = send if send is not None else functools.partial(sendMail, reactor)
        self.lines = []
        self.more = 0
        self.due = None

    @classmethod
    def fromIni(cls, ini, reactor, name):
        """The service the Mail* keys of ``ini`` ask for, or None."""
        host = ini.get("MailHost", "").strip()
        recipients = recipientsFrom(ini)
        if not host or not recipients:
            return None
        return cls(reactor, host, recipients, port=_port(ini),
                   signon=ini.get("MailSignon", "").strip(), sender=ini.get("MailFromName", "").strip(),
                   collectMinutes=ini.getint("MailCollectTime", 1), waitSeconds=ini.getint("MailWaitTime", 10),
                   name=name)

    def startService(self):
        super().startService()
        self.publisher.addObserver(self.observe)
        self.log.info("error messages are mailed to {recipients} through {address}",
                      recipients=", ".join(self.recipients), address=hostPort(self.host, self.port))

    def stopService(self):
        """Stop collecting, and send what was collected once the errors
        already observed, still on their way to ``_collect``
        (``callFromThread``), have reached it."""
        super().stopService()
        self.publisher.removeObserver(self.observe)
        return task.deferLater(self.reactor, 0, self.flush)

    def observe(self, event):
        """The log observer (any thread): collect an error event (not one
        of the mail client's own, which could never end)."""
        if event.get("log_level") in MAILED_LEVELS and not event.get("log_namespace", "").startswith(
                ("twisted.mail", __name__)):
            self.reactor.callFromThread(self._collect, eventLine(event))

    def _collect(self, line):
        if len(self.lines) < MOST_LINES:
            self.lines.append(line)
        else:
            self.more += 1
        if self.due is None:
            self.due = self.reactor.callLater(self.collectSeconds, self.flush)

    def flush(self):
        """Send what was collected, now; fires when the mail is sent or
        dropped, never fails."""
        if self.due is not None and self.due.active():
            self.due.cancel()
        self.due = None
        lines, more = self.lines, self.more
        self.lines, self.more = [], 0
        if not lines:
            return None
        message = self.message(lines, more)
        d = self.send(self.host, self.sender, self.recipients, message, senderDomainName=self.signon,
                      port=self.port)
        d.addTimeout(self.waitSeconds, self.reactor)
        d.addCallbacks(lambda _: self.log.info("{count} error message(s) mailed to {recipients}",
                                               count=len(lines) + more, recipients=", ".join(self.recipients)),
                       lambda failure: self.log.warn("error messages could not be mailed through {address}: "
                                                     "{error}", address=hostPort(self.host, self.port),
                                                     error=failure.getErrorMessage()))
        return d

    def message(self, lines, more):
        """The mail (bytes) of the collected ``lines`` and ``more`` left out."""
        mail = EmailMessage()
        count = len(lines) + more
        mail["Subject"] = f"{self.name}: {count} error message{'s' if count != 1 else ''}"
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.recipients)
        mail["Date"] = formatdate(localtime=True)
        body = "\n".join(lines)
        if more:
            body += f"\n... and {more} more (see the server log)"
        mail.set_content(body + "\n")
        return mail.as_bytes()
