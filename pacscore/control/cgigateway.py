"""``dgate`` as a CGI script, as Conquest's dgate is one (manual appendix 5):
started by a web server (Apache, IIS ...) with no arguments and the request
in its environment (``QUERY_STRING``, ``REQUEST_METHOD``, ``CONTENT_TYPE``,
``CONTENT_LENGTH``, a POST body on standard input), it asks the web
interface of the running pacs for ``/cgi-bin/dgate?QUERY_STRING`` (at
``WebEndpoint`` of the dicom.ini in its folder, else at the host its
Conquest ``WebServerFor`` names on the default web port, else at the
default) and
writes the answer as a CGI answer: ``Status`` (when not 200), the content
type and other headers, a blank line, the body.  The POST body goes on a
chunk at a time as standard input gives it, and the answer's body is written
out as it comes (a page whose links name the script is changed whole: pages
are small), so that neither holds a large zip or upload in memory and the
web server gets the first bytes at once.  So an existing Conquest
web set-up keeps working with pacs behind it.  With ``WebUsers`` set, the
browser's login goes through (``HTTP_AUTHORIZATION``, which Apache sets
under ``CGIPassAuth On``) and the server's challenge comes back; the
browser's ``Host``, ``Origin`` and ``Sec-Fetch-Site`` go through too, so
that a form posted from a page of another site is refused as it is
without the gateway.  An answer the server gives before it took the whole
POST body (a 401 for the login, a 413 for an upload too large) is relayed
too, though the server closed the connection while the body was sent.  The pages' links and forms name the script as the
browser reaches it: dicom.ini's ``WebScriptAddress`` (Conquest's "path to
script engine", e.g. ``http://server/cgi-bin/dgate.exe``), else the web
server's ``SCRIPT_NAME``, in place of pacs's own ``/cgi-bin/dgate``.
"""

import http.client
import os
import ssl
import sys
from urllib.parse import quote

from pacscore.control.endpoint import LOOPBACK, hostAndPort
from pacscore.hostport import hostPort
from pacscore.web import DEFAULT_WEB_ENDPOINT, DEFAULT_WEB_PORT
from pacscore.web.html import SCRIPT

PASSED_HEADERS = ("content-type", "content-disposition", "cache-control", "access-control-allow-origin",
                  "access-control-expose-headers", "vary", "warning", "location", "www-authenticate", "retry-after",
                  "content-security-policy", "x-content-type-options", "x-frame-options")
# the browser's: its login, and where its request comes from (pacscore.web.crossorigin)
PASSED_REQUEST_HEADERS = (("Content-Type", "CONTENT_TYPE"), ("Authorization", "HTTP_AUTHORIZATION"),
                          ("Host", "HTTP_HOST"), ("Origin", "HTTP_ORIGIN"), ("Sec-Fetch-Site", "HTTP_SEC_FETCH_SITE"))
TIMEOUT = 600
CHUNK = 1 << 16
# what a query string keeps as it is: RFC 3986's reserved characters and its escapes
QUERY_SAFE = "/?:@!$&'()*+,;=%"


def isCGIRequest(argv, environ):
    """Whether dgate runs as a CGI script: no arguments, a request in the environment."""
    return not argv and "QUERY_STRING" in environ and "GATEWAY_INTERFACE" in environ


def _head(status, reason, headers, script):
    """``(CGI header bytes, whether the body is a page whose links must
    name script)`` of an answer."""
    lines = [] if status == 200 else [f"Status: {status} {reason}"]
    headers = [(name, value) for name, value in headers if name.lower() in PASSED_HEADERS]
    page = False
    if script != SCRIPT:
        headers = [(name, value.replace(SCRIPT, script, 1) if name.lower() == "location" and value.startswith(SCRIPT)
                    else value) for name, value in headers]
        page = any(name.lower() == "content-type" and value.startswith("text/html") for name, value in headers)
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), page


def _answer(write, status, reason, headers, body):
    """The gateway's own answer (a 502) with ``body``."""
    write(_head(status, reason, headers, SCRIPT)[0] + body)


def _relay(write, answer, url, script):
    """Write the server's ``answer`` (an HTTPResponse) to ``url`` as the
    CGI answer: the headers, then the body as it arrives; 1 (and why on
    standard error, the web server's log) when it broke off, else 0."""
    head, page = _head(answer.status, answer.reason, answer.headers.items(), script)
    try:
        if page:
            write(head + _scriptNamed(answer.read(), script))
            return 0
        write(head)
        while chunk := answer.read1(CHUNK):
            write(chunk)
    except (http.client.HTTPException, OSError) as e:
        print(f"dgate: the answer to {url} broke off: {e!r}", file=sys.stderr)
        return 1
    return 0


class BadBody(Exception):
    """A POST body that cannot be passed on: standard input ended before
    its ``CONTENT_LENGTH`` bytes (the browser broke off its upload), or
    ``CONTENT_LENGTH`` is not a length."""


def _query(environ):
    """``QUERY_STRING`` as a request target takes it: a web server passes
    on what the browser sent, which may hold spaces or raw bytes (a name
    typed as ``M\xfcller``, given to Python's environment as surrogates);
    these are escaped, the escapes already there kept."""
    return quote(os.fsencode(environ.get("QUERY_STRING", "")), safe=QUERY_SAFE)


def _length(environ):
    """The POST body's length, ``CONTENT_LENGTH``; ``BadBody`` when that
    is not a length."""
    text = environ.get("CONTENT_LENGTH") or "0"
    if not (text.isascii() and text.isdigit()):
        raise BadBody(f"CONTENT_LENGTH {text!r} is not the length of a POST body")
    return int(text)


def _posted(stdin, length):
    """The ``length`` bytes of a POST body from ``stdin``, a chunk at a
    time; ``BadBody`` when it ends before, so that the server is not left
    waiting for the rest."""
    left = length
    while left > 0:
        chunk = stdin.read(min(CHUNK, left))
        if not chunk:
            raise BadBody(f"the POST body ended after {length - left} of its {length} bytes (CONTENT_LENGTH)")
        left -= len(chunk)
        yield chunk


def _scriptNamed(body, script):
    """An HTML page whose links (``"/cgi-bin/dgate?...``) and form actions
    (``"/cgi-bin/dgate"``) name ``script`` instead."""
    quoted = script.replace("&", "&amp;").replace('"', "&quot;").encode("utf-8")
    return body.replace(f'"{SCRIPT}?'.encode(), b'"' + quoted + b"?").replace(f'"{SCRIPT}"'.encode(),
                                                                             b'"' + quoted + b'"')


def _scriptAddress(ini, environ):
    """Where the browser reaches this script: WebScriptAddress, else SCRIPT_NAME."""
    return ini.get("WebScriptAddress", "").strip() or environ.get("SCRIPT_NAME", "").strip() or SCRIPT


def _webInterface(ini):
    """``(secure, host, port, source)`` of the web interface to ask, and
    where dicom.ini says so: its WebEndpoint; else its WebServerFor
    (Conquest's "IP address ... of DICOM server", which its CGI dgate
    reaches at TCPPort, the DICOM port) on the default web port; else the
    default WebEndpoint.  ValueError for a bad WebEndpoint."""
    description = ini.get("WebEndpoint", "").strip()
    if description:
        return (*hostAndPort(description, DEFAULT_WEB_PORT), f"WebEndpoint of {ini.path}")
    serverFor = ini.get("WebServerFor", "").strip()
    if serverFor:
        return (*hostAndPort(DEFAULT_WEB_ENDPOINT, DEFAULT_WEB_PORT, host=serverFor),
                f"WebServerFor of {ini.path} on the default web port (WebEndpoint sets another)")
    return (*hostAndPort(DEFAULT_WEB_ENDPOINT, DEFAULT_WEB_PORT), f"the default WebEndpoint ({ini.path} sets "
                                                                  f"none)")


def _connection(secure, host, port):
    """An HTTP(S) connection to the web interface at ``host``, ``port``
    (the certificate of one on this machine not checked)."""
    if not secure:
        return http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    context = ssl._create_unverified_context() if host in LOOPBACK else None
    return http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context)


def _ask(connection, method, path, body, headers):
    """The server's response to the request; one it gave before it took
    the whole ``body`` (a 401, a 413: then it closes the connection, and
    the rest of the body cannot be sent) is read all the same."""
    try:
        connection.request(method, path, body=body, headers=headers)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the answer, if any, is waiting to be read
    return connection.getresponse()


def runCGI(ini, environ, stdin, write):
    """Pass the CGI request on to the server's web interface; 0, or 1 when
    no server answered (the web server still gets a 502 answer), the POST
    body was bad (it ended early, or ``CONTENT_LENGTH`` is no length: a
    400) or the server's answer broke off."""
    try:
        secure, host, port, source = _webInterface(ini)
    except ValueError as e:
        _answer(write, 502, "Bad Gateway", [("Content-Type", "text/plain")],
                f"dgate: bad WebEndpoint {ini.get('WebEndpoint', '')}: {e}\n".encode())
        return 1
    path = f"{SCRIPT}?{_query(environ)}"
    url = f"{'https' if secure else 'http'}://{hostPort(host, port)}{path}"
    method = environ.get("REQUEST_METHOD", "GET").upper()
    headers = {name: os.fsencode(environ[variable]) for name, variable in PASSED_REQUEST_HEADERS
               if environ.get(variable)}
    body = None
    connection = _connection(secure, host, port)
    try:
        if method == "POST":
            length = _length(environ)
            body, headers["Content-Length"] = _posted(stdin, length), str(length)
        with _ask(connection, method, path, body, headers) as response:
            return _relay(write, response, url, _scriptAddress(ini, environ))
    except BadBody as e:
        print(f"dgate: {e}", file=sys.stderr)
        _answer(write, 400, "Bad Request", [("Content-Type", "text/plain")], f"dgate: {e}\n".encode())
        return 1
    except (http.client.HTTPException, OSError) as e:
        _answer(write, 502, "Bad Gateway", [("Content-Type", "text/plain")],
                f"dgate: no pacs web interface at {hostPort(host, port)}, {source} ({e})\n".encode())
        return 1
    finally:
        connection.close()
