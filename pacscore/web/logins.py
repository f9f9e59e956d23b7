"""Who may use the web service: with ``WebUsers`` set, every request needs
HTTP Basic credentials of a user of that file, an Apache htpasswd file of
bcrypt hashes (``htpasswd -B``), re-read when it changes.  The site is
guarded the twisted.cred way (a Portal, this checker, a realm handing out
the site's root); CORS preflights (OPTIONS, which browsers send without
credentials) pass unguarded.  The login of a request with a body is
checked from its headers before the body is read (``LoginGuard.loggedIn``).

Checking a bcrypt hash takes milliseconds of CPU (hundreds at high costs),
so it runs in a thread (the reactor's pool, not the I/O pool that stores
use: a flood of bad logins must not slow them), and a password once
verified is remembered (as a keyed digest, never in clear) while its
user's line is unchanged: a viewer sends the credentials with each of
hundreds of requests.

The access log lines (Apache's combined format, in the server log) name
the user a request logged in as, where Apache's ``%u`` stands."""

import collections
import hashlib
import hmac
import os
import threading
from urllib.parse import quote

import bcrypt
from twisted.cred import error
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import guard
from twisted.web.http import combinedLogFormatter, datetimeToLogString
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.resource import IResource
from zope.interface import implementer, provider

from pacscore.config.errors import ConfigError

BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
BCRYPT_LIMIT = 72  # bytes of a password that bcrypt (and Apache) look at
REMEMBERED = 1024  # verified passwords kept (as digests)
HTPASSWD_COST = 5  # htpasswd -B's bcrypt cost when -C gives none
MISSING = ()  # the stamp of a WebUsers file that is not there


def readPasswordFile(path):
    """``{user: bcrypt hash}`` of the htpasswd file ``path`` (UTF-8; blank
    lines and ``#`` comments skipped); ConfigError naming the line of
    anything else, OSError when it cannot be read."""
    users = {}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise ConfigError(path, number, "not UTF-8 text") from None
            if not line or line.startswith("#"):
                continue
            user, colon, hashed = line.partition(":")
            if not colon or not user:
                raise ConfigError(path, number, "expected user:hash, as htpasswd writes")
            if not hashed.startswith(BCRYPT_PREFIXES) or len(hashed) != 60:
                raise ConfigError(path, number, f"the password of {user} is not a bcrypt hash; "
                                                "make it with htpasswd -B")
            if user in users:
                raise ConfigError(path, number, f"{user} is given twice")
            users[user] = hashed.encode("ascii")
    return users


def passwordFile(configuration):
    """The ``PasswordFile`` dicom.ini's ``WebUsers`` names, or None when it
    names none; ConfigError, naming the line, when it cannot be read."""
    name = configuration.ini.get("WebUsers", "").strip()
    if not name:
        return None
    try:
        return PasswordFile(configuration.pathSetting("WebUsers"))
    except OSError as e:
        raise ConfigError(configuration.iniPath, configuration.ini.lineOf("WebUsers"),
                          f"WebUsers {name}: {e.strerror or e}") from e


def unknownUserHash(users):
    """What to check an unknown user's password against so that it takes
    as long as the costliest hash of ``users`` (``{user: hash}``) would: a
    bcrypt salt of that cost (``$2b$12$...``; the cost is all the time
    depends on), which no password matches (it has no digest).  Made at
    once, not computed: cheap enough for the reactor."""
    costs = [bcryptCost(hashed) for hashed in users.values()]
    return bcrypt.gensalt(max([cost for cost in costs if 4 <= cost <= 31], default=HTPASSWD_COST))


def bcryptCost(hashed):
    """The cost of the bcrypt hash or salt ``hashed`` (bytes), 0 when it names none."""
    return int(hashed[4:6]) if hashed[4:6].isdigit() else 0


class PasswordFile:
    """The users of an htpasswd file, read anew when its size, time or
    inode changed.  A file that became unreadable or wrong lets nobody in
    (logged once per change) rather than keep users its editor removed.
    ``unknownUser`` is the file's ``unknownUserHash``."""

    log = Logger()

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp = None
        self._users = readPasswordFile(path)
        self.unknownUser = unknownUserHash(self._users)
        self._stamp = self._stampNow()

    def _stampNow(self):
        status = os.stat(self.path)
        return status.st_mtime_ns, status.st_size, status.st_ino

    def users(self):
        """In a thread: ``{user: hash}`` as the file now says."""
        with self._lock:
            try:
                stamp = self._stampNow()
            except OSError as e:
                return self._unusable(MISSING, e)
            if stamp != self._stamp:
                try:
                    users = readPasswordFile(self.path)
                except (OSError, ConfigError) as e:
                    return self._unusable(stamp, e)
                self._stamp, self._users, self.unknownUser = stamp, users, unknownUserHash(users)
                self.log.info("web: read {count} users from {path}", count=len(users), path=self.path)
            return self._users

    def _unusable(self, stamp, error):
        """No users, because of ``error``: logged when the file (its
        ``stamp``) changed since it was last read or found unusable."""
        if stamp != self._stamp:
            self.log.error("web: WebUsers {path} cannot be used, so nobody can log in: {error}",
                           path=self.path, error=error)
        self._stamp, self._users = stamp, {}
        return self._users


@implementer(ICredentialsChecker)
class PasswordFileChecker:
    """Checks user names and passwords against a PasswordFile in a thread
    (``inThread(f, *args)``, a Deferred); the avatar ID is the user name."""

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()

    def __init__(self, passwords, inThread):
        self.passwords = passwords
        self.inThread = inThread
        self._key = os.urandom(32)
        self._verified = collections.OrderedDict()
        self._lock = threading.Lock()

    def requestAvatarId(self, credentials):
        d = self.inThread(self._check, credentials.username, credentials.password)
        d.addCallbacks(self._loggedIn, self._refused, (credentials,), None, (credentials,))
        return d

    def _loggedIn(self, user, credentials):
        request = getattr(credentials, "request", None)
        if request is not None:
            request.webUser = user  # for the access log
        return user

    def _refused(self, failure, credentials):
        failure.trap(error.UnauthorizedLogin)
        request = getattr(credentials, "request", None)
        self.log.warn("web: {peer}: login of {user!r} refused: {why}", peer=_peer(request),
                      user=credentials.username.decode("utf-8", "replace"), why=failure.getErrorMessage())
        return failure

    def _check(self, username, password):
        user = _asUTF8(username).decode("utf-8")
        password = _asUTF8(password)[:BCRYPT_LIMIT]
        hashed = self.passwords.users().get(user)
        if hashed is None:
            bcrypt.checkpw(password, self.passwords.unknownUser)  # as long as a wrong password takes
            raise error.UnauthorizedLogin("no such user")
        digest = hmac.new(self._key, b"\0".join((username, password, hashed)), hashlib.sha256).digest()
        with self._lock:
            if digest in self._verified:
                self._verified.move_to_end(digest)
                return user
        if not bcrypt.checkpw(password, hashed):
            if bcryptCost(hashed) < bcryptCost(self.passwords.unknownUser):
                bcrypt.checkpw(password, self.passwords.unknownUser)  # as long as an unknown user takes
            raise error.UnauthorizedLogin("wrong password")
        with self._lock:
            self._verified[digest] = True
            while len(self._verified) > REMEMBERED:
                self._verified.popitem(last=False)
        return user


def _asUTF8(value):
    """Credentials a client sent (bytes) in UTF-8, as browsers send them;
    those that are not UTF-8 read as Latin-1 (what requests and other older
    clients send)."""
    try:
        value.decode("utf-8")
        return value
    except UnicodeDecodeError:
        return value.decode("latin-1").encode("utf-8")


@implementer(IRealm)
class SiteRealm:
    """Every user gets the whole site: its root resource."""

    def __init__(self, root):
        self.root = root

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IResource not in interfaces:
            raise NotImplementedError("the web service hands out resources only")
        return IResource, self.root, lambda: None


def _peer(request):
    return "?" if request is None else getattr(request.getClientAddress(), "host", "?")


def webWriters(ini):
    """The WebUsers users of ``WebWriters`` (comma or space separated)."""
    return set(ini.get("WebWriters", "").replace(",", " ").split())


def writerRefusal(ini, user, what):
    """Why the WebUsers ``user`` (None: no login) may not ``what`` by
    ``WebWriters``, or None when it lists nobody or them."""
    writers = webWriters(ini)
    if not writers or user in writers:
        return None
    who = f"user {user}" if user else "a request without a login"
    return f"{who} may not {what} (WebWriters)"


def callingAE(request):
    """What converters see as the calling AE (``%u``) of a web request:
    the WebUsers user who logged in (16 characters at most), else nothing."""
    return loginAE(getattr(request, "webUser", None))


def loginAE(user):
    """The calling AE (``%u``) converters see for the WebUsers ``user`` (None: no login)."""
    return (user or "")[:16]


@provider(IAccessLogFormatter)
def accessLogLine(timestamp, request):
    """Apache's combined log line of ``request``, with the user it logged
    in as (URL-quoted) where Apache's ``%u`` stands.  Its date is the time
    of day now: Twisted's ``timestamp`` is of the reactor's clock, which is
    not (``pacscore.reactorclock``)."""
    line = combinedLogFormatter(datetimeToLogString(), request)
    user = getattr(request, "webUser", None)
    return line if user is None else line.replace(" - - ", f" - {quote(user, safe='@.-_')} ", 1)


class BasicLogin(guard.BasicCredentialFactory):
    """HTTP Basic credentials (UTF-8, the challenge says) that know their
    request (for the logs); a malformed Authorization header is logged and
    refused."""

    log = Logger()

    def getChallenge(self, request):
        return {**super().getChallenge(request), "charset": "UTF-8"}

    def decode(self, response, request):
        try:
            credentials = super().decode(response, request)
        except error.LoginFailed:
            self.log.warn("web: {peer}: a malformed Basic Authorization header refused", peer=_peer(request))
            raise
        credentials.request = request
        return credentials


class LoginGuard(guard.HTTPAuthSessionWrapper):
    """The site root, for users that log in; OPTIONS requests (CORS
    preflights) reach it without credentials."""

    log = Logger()

    def __init__(self, root, portal, realmName):
        super().__init__(portal, [BasicLogin(realmName)])
        self.root = root

    def getChildWithDefault(self, path, request):
        if request.method == b"OPTIONS":
            return self.root.getChildWithDefault(path, request)
        return super().getChildWithDefault(path, request)

    def render(self, request):
        if request.method == b"OPTIONS":
            return self.root.render(request)
        return super().render(request)

    def loggedIn(self, request):
        """A Deferred: whether the Authorization header of ``request``, whose
        body is not read yet, logs a user in (a refused login is logged as
        when the request is answered)."""
        header = request.getHeader(b"authorization")
        factory, response = self._selectParseHeader(header) if header else (None, None)
        if factory is None:
            return defer.succeed(False)
        try:
            credentials = factory.decode(response, request)
        except error.LoginFailed:
            return defer.succeed(False)
        d = self._portal.login(credentials, None, IResource)
        d.addCallbacks(lambda _: True, self._notLoggedIn)
        return d

    def _notLoggedIn(self, failure):
        if not failure.check(error.Unauthorized, error.LoginFailed):
            self.log.failure("web: a login could not be checked", failure)
        return False

    def challenges(self, request):
        """The ``WWW-Authenticate`` headers (name, value) of a 401 to
        ``request``, as twisted.web's guard writes them."""
        return [("WWW-Authenticate", factory.scheme.decode("ascii") + " " + ", ".join(
                    f"{name}={_quoted(value)}" for name, value in factory.getChallenge(request).items()))
                for factory in self._credentialFactories]


def _quoted(value):
    """``value`` (str or bytes) as an HTTP quoted string."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def guarded(root, passwords, inThread, realmName):
    """``root`` behind a login for the users of ``passwords`` (a
    PasswordFile, checked with ``inThread``)."""
    portal = Portal(SiteRealm(root), [PasswordFileChecker(passwords, inThread)])
    return LoginGuard(root, portal, realmName)
