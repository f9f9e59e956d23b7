"""HTML for the web pages: a page frame and Conquest's ruled tables, every
value escaped, and links to the pages as ``dgate?mode=...`` URLs."""

from html import escape
from urllib.parse import urlencode

SCRIPT = "/cgi-bin/dgate"


class Markup(str):
    """Text that is HTML already: written as it is, not escaped."""


def text(value):
    """``value`` as HTML: Markup as it is, anything else escaped."""
    return value if isinstance(value, Markup) else Markup(escape(str(value)))


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
