"""What a web page answers: ``Answer`` (bytes, content type, extra headers)
or ``StreamAnswer`` (the
chunks of an asynchronous iterator, each made as the client takes the
last), ``WebError`` (an HTTP error status with a message for the user and the log),
and ``Parameters``, a request's query parameters with the ``[webdefaults]``
of dicom.ini behind them (``queryArgs`` reads them from the query)."""

from typing import NamedTuple
from urllib.parse import parse_qs

from pacscore.web.html import page

HTML = "text/html; charset=utf-8"
NO_CACHE = (("Cache-Control", "no-cache"),)


def utf8ContentType(contentType):
    """A page author's content type (``Content-type: text/html`` of a
    scripted or Lua page) for the UTF-8 pages are sent in: a text type
    without a charset gets ``; charset=utf-8``, or a browser reads
    "Gräßle" as Latin-1."""
    if contentType.lower().startswith("text/") and "charset" not in contentType.lower():
        return contentType + "; charset=utf-8"
    return contentType


class Answer(NamedTuple):
    body: bytes
    contentType: str | None  # None: no Content-Type (a 204's)
    headers: tuple = ()
    status: int = 200


class StreamAnswer(NamedTuple):
    """An answer of the bytes ``chunks`` (an asynchronous iterator) yields;
    ``release`` (an async function, or None) is awaited once the answer is
    done with, sent, broken off or never started (the client left first)."""

    chunks: object
    contentType: str
    headers: tuple = ()
    status: int = 200
    release: object = None


class WebError(Exception):
    """A request that gets ``code`` and a page saying ``message``, with
    ``headers`` (``(name, value)`` pairs, e.g. a 405's ``Allow``)."""

    def __init__(self, code, message, headers=()):
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = tuple(headers)


def notAllowed(method, allowed):
    """The WebError 405 of a request by ``method`` where only the methods
    ``allowed`` are answered, which its ``Allow`` header names."""
    names = ", ".join(allowed)
    return WebError(405, f"{method} is not answered here: {names} is", [("Allow", names)])


def checkPost(request, why):
    """A 405 (``Allow: POST``) saying ``why`` unless ``request`` is a POST:
    what changes the archive comes from a page's button."""
    if request.method != b"POST":
        raise WebError(405, why, [("Allow", "POST")])


def htmlAnswer(title, *parts, cache=False):
    """A whole page (``html.page``) as an Answer; not cached unless ``cache``."""
    return Answer(page(title, *parts).encode("utf-8", "replace"), HTML, () if cache else NO_CACHE)


def notText(name):
    """The WebError 400 of a request whose parameter ``name`` is not UTF-8
    text (PS3.18 8.3.4.1 asks it of QIDO too)."""
    return WebError(400, f"the parameter {name} must be UTF-8 text")


def queryArgs(uri):
    """The parameters of the query of ``uri`` (a request's path and query,
    bytes) ({bytes: [bytes]}, blank values kept, a name without ``=`` too,
    as Conquest's CGI keeps it) split at ``&`` alone, as a URL's query is
    (PS3.18, and Conquest's CGI).  twisted.web's ``request.args`` splits
    at ``;`` too, which cuts a list of media types at its first parameter:
    ``contentType=image/png;q=0,image/jpeg`` would be ``image/png`` and a
    parameter ``q``; the site's requests get these instead
    (``pacscore.web.site.PacsRequest``).  The query goes through Latin-1,
    which keeps every byte, a %-escaped one too, as it is (``parse_qs`` of
    bytes takes ASCII alone: ``%C3%BC`` would raise)."""
    query = uri.partition(b"?")[2].decode("latin-1")
    return {name.encode("latin-1"): [value.encode("latin-1") for value in values]
            for name, values in parse_qs(query, keep_blank_values=True, separator="&", encoding="latin-1").items()}


class Parameters:
    """A request's parameters (first value of each, UTF-8, names matched
    exactly as Conquest does) over ``defaults`` ({name: value}), and the
    WebUsers ``user`` who made it (None without a login).  A value that is
    not UTF-8 text (an uploaded file) is a 400 when asked for."""

    def __init__(self, args, defaults=None, user=None):
        self.user = user
        self.given = {}
        self.binary = set()
        for name, values in args.items():
            name = name.decode("utf-8", "replace")
            try:
                self.given[name] = values[0].decode("utf-8")
            except UnicodeDecodeError:
                self.binary.add(name)
        self.defaults = defaults or {}

    def get(self, name, default=""):
        if name in self.binary:
            raise notText(name)
        if name in self.given:
            return self.given[name]
        return self.defaults.get(name.lower(), default)

    def number(self, name, default, low=0, high=65536):
        """An integer parameter from ``low`` to ``high``."""
        text = self.get(name, "").strip()
        if not text:
            return default
        try:
            value = int(text)
        except ValueError:
            raise WebError(400, f"{name} must be a whole number, not {text!r}") from None
        if not low <= value <= high:
            raise WebError(400, f"{name} must be from {low} to {high}, not {value}")
        return value
