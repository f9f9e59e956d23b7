"""Refusing cross-site requests that would change the archive (CSRF): a
page of another site must not make a visitor's browser post the web
interface's forms (delete a study, upload, move, edit the worklist) with
the visitor's login, or, without logins, from inside the hospital network.

Browsers say where a request comes from: ``Sec-Fetch-Site`` (every current
browser) must be ``same-origin`` (a page of this server) or ``none`` (typed
in, a bookmark); without it the ``Origin`` header, when there is one, must
name this server's host (the ``Host`` header).  A request with neither
comes from no browser (curl, scripts, the CGI gateway without them) and
passes, as do GET, HEAD and OPTIONS, which change nothing.  The same rule as
Go's ``net/http.CrossOriginProtection``; no tokens in the forms, so pages
cached or scripted keep working.  A page of another site framing the
forms, so that the visitor clicks their buttons (which then post as
``same-origin``), is kept out by the framing headers the site gives every
page (``pacscore.web.site``).
"""

from urllib.parse import urlsplit

from pacscore.web.answers import WebError

SAFE_METHODS = (b"GET", b"HEAD", b"OPTIONS")
TRUSTED_SITES = (b"same-origin", b"none")


def refuseCrossOrigin(request):
    """Raise a 403 WebError when ``request`` is one that changes things
    and a browser sent it for a page of another origin."""
    if request.method in SAFE_METHODS:
        return
    fetchSite = request.getHeader(b"sec-fetch-site")
    if fetchSite is not None:
        if fetchSite.strip().lower() not in TRUSTED_SITES:
            raise WebError(403, f"a page of another site may not change the archive "
                                f"(Sec-Fetch-Site: {fetchSite.decode('latin-1')})")
        return
    origin = request.getHeader(b"origin")
    if origin is None:
        return
    host = (request.getHeader(b"host") or b"").decode("latin-1").strip().lower()
    text = origin.decode("latin-1").strip()
    if text.lower() == "null" or urlsplit(text).netloc.lower() != host:
        raise WebError(403, f"a page of another origin may not change the archive (Origin: {text})")
