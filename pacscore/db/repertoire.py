"""The characters a database's text can hold.

A PostgreSQL database made in another encoding than UTF8 (LATIN1, WIN1252
...: where Conquest, sending Latin-1 bytes, ran on PostgreSQL) holds that
encoding's characters only.  pacs talks UTF-8 to it and its server converts
what it is sent, failing the whole statement on a character it has no
equivalent for.  The driver records the database's encoding on the engine's
dialect at its first connection (``setEncoding``); none recorded (UTF8,
SQL_ASCII, SQLite, MySQL's utf8mb4 tables) means every character.
``holds`` says whether a text can be sent, ``held`` gives it with a ``?``
(a file name: ``_``) for each character that cannot, and ``HeldText`` binds a value that cannot
as NULL (which nothing equals or is LIKE: such a key matches nothing, as no
stored value holds it).

A PostgreSQL database in SQL_ASCII (a Conquest site's) holds every
character, but as bytes: its ``VARCHAR(n)`` holds n bytes, n UTF-8 bytes
of pacs's text.  The driver records it on the dialect (``setCountsBytes``);
``storedLength`` gives the length of a text as the database counts it, and
``fitted`` cuts a text to a length so counted, at a character's boundary.
"""

from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

_ENCODING = "pacs_text_encoding"  # attribute of a dialect: the Python codec of its database, else absent
_COUNTS_BYTES = "pacs_counts_bytes"  # attribute of a dialect: True when its database counts text in UTF-8 bytes


def setEncoding(dialect, encoding):
    """Record ``encoding`` (a Python codec) as that of ``dialect``'s database."""
    setattr(dialect, _ENCODING, encoding)


def encodingOf(dialect):
    """The Python codec of the database of ``dialect``, None when it holds every character."""
    return getattr(dialect, _ENCODING, None)


def setCountsBytes(dialect):
    """Record that the database of ``dialect`` counts text in UTF-8 bytes."""
    setattr(dialect, _COUNTS_BYTES, True)


def countsBytes(dialect):
    """Whether the database of ``dialect`` counts text in UTF-8 bytes (SQL_ASCII)."""
    return getattr(dialect, _COUNTS_BYTES, False)


def storedLength(dialect, text):
    """The length of ``text`` as the database of ``dialect`` counts it."""
    return len(text.encode("utf-8")) if countsBytes(dialect) and not text.isascii() else len(text)


def fitted(dialect, text, length):
    """``text`` cut to ``length`` as the database of ``dialect`` counts it,
    never in the middle of a character."""
    if storedLength(dialect, text) <= length:
        return text
    if not countsBytes(dialect):
        return text[:length]
    return text.encode("utf-8")[:length].decode("utf-8", "ignore")  # ignore: the part of a character cut


def holds(dialect, text):
    """Whether the database of ``dialect`` can hold every character of ``text``."""
    encoding = encodingOf(dialect)
    if encoding is None or text.isascii():
        return True
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def held(dialect, text, substitute="?"):
    """``text`` with ``substitute`` for each character the database of ``dialect`` cannot hold."""
    return text if holds(dialect, text) else "".join(c if holds(dialect, c) else substitute for c in text)


class HeldText(TypeDecorator):
    """A text bound as itself where the database can hold it, else as NULL."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value if value is None or holds(dialect, value) else None
