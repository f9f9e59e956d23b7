"""HTML for the web pages: a page frame and Conquest's ruled tables, every
value escaped, and links to the pages as ``dgate?mode=...`` URLs; values
made inert for HTML that page authors wrote (``inert``, ``inUrlQuery``)."""

import functools
import re
from html import escape
from urllib.parse import quote, urlencode

SCRIPT = "/cgi-bin/dgate"

# & and every character that ends or opens an attribute value, quoted or not
# (HTML5: whitespace, quotes, =, <, >, backtick), as a character reference.
_REFERENCES = {**{ord(c): f"&#{ord(c)};" for c in "\t\n\f\r '=`"},
               ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;"}
# The end of a tag's text that is within an href, src or action value, past its "?".
_IN_URL_QUERY = re.compile(r"""\s(?:href|src|action)\s*=\s*"""
                           r"""(?:"[^"]*\?[^"]*|'[^']*\?[^']*|[^\s"'>][^\s>]*\?[^\s>]*)\Z""", re.IGNORECASE)


class Markup(str):
    """Text that is HTML already: written as it is, not escaped."""


def text(value):
    """``value`` as HTML: Markup as it is, anything else escaped."""
    return value if isinstance(value, Markup) else Markup(escape(str(value)))


def inert(value):
    """``value`` as HTML text that a page author's HTML shows as it is
    wherever it puts it outside a ``<script>`` or an event handler: in
    text or in an attribute value, quoted or not (Conquest's pages write
    ``<A HREF=dgate?...=%s>``).  Besides ``& < > " '``, whitespace, ``=``
    and backtick are character references, which the browser reads back
    as the characters, so the value can neither end the attribute nor add
    one."""
    return str(value).translate(_REFERENCES)


@functools.lru_cache(maxsize=256)  # a listing asks it of the same formats for each row
def inUrlQuery(before):
    """Whether text written after the HTML ``before`` lands in the query
    string of a URL: within a tag, in an ``href``, ``src`` or ``action``
    value past its ``?``."""
    start = before.rfind("<")
    tag = before[start:]
    return start >= 0 and ">" not in tag and _IN_URL_QUERY.search(tag) is not None


def queryValue(value, safe=":"):
    """``value`` percent-encoded for a URL's query string, ``safe`` kept (``inert`` leaves it as it is)."""
    return quote(str(value), safe=safe)


def inertValue(value, before):
    """``value`` (a string) put into HTML after ``before``: ``queryValue`` in a
    URL's query string, else ``inert``."""
    return queryValue(value) if inUrlQuery(before) else inert(value)


def join(*parts):
    return Markup("".join(text(part) for part in parts))


def url(mode, **parameters):
    """The page ``mode`` with ``parameters`` (empty ones left out)."""
    given = {name: value for name, value in parameters.items() if value not in (None, "")}
    return f"{SCRIPT}?" + urlencode({"mode": mode, **given})


def link(href, label):
    return Markup(f"<a href=\"{escape(href)}\">{text(label)}</a>")


def image(src, alt, **attributes):
    extra = "".join(f" {name}=\"{escape(str(value))}\"" for name, value in attributes.items())
    return Markup(f"<img src=\"{escape(src)}\" alt=\"{escape(alt)}\"{extra}>")


def table(caption, headers, rows):
    """A Conquest-style ruled table; ``rows`` of cells (text or Markup)."""
    lines = [f"<table rules=all border=1><caption>{text(caption)}</caption>",
             "<tr>" + "".join(f"<th>{text(header)}</th>" for header in headers) + "</tr>"]
    lines += ["<tr>" + "".join(f"<td>{text(cell)}</td>" for cell in row) + "</tr>" for row in rows]
    lines.append("</table>")
    return Markup("\n".join(lines))


def page(title, *parts):
    """A whole page: title, Conquest's colours, ``parts``, a link home."""
    heading = text(title)
    return Markup(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>pacs - {heading}</title></head>\n"
        f"<body bgcolor=\"#CFDFCF\">\n<h2>pacs - {heading}</h2>\n"
        + "\n".join(text(part) for part in parts)
        + f"\n<hr><p>{link(url('top'), 'Home')}</p>\n</body></html>\n")
