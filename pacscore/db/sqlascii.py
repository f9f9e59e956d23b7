"""Reading a Conquest site's PostgreSQL database in ``SQL_ASCII``.

Such a database keeps the bytes it is sent: UTF-8 from pacs, but in the
rows Conquest wrote (its default ``UTF8ToDB = 0``) the bytes of the
objects, Latin-1 for an ``ISO_IR 100`` name (``M\\xfcller``).  A client in
``UTF8`` is refused every row holding such bytes (``invalid byte sequence
for encoding "UTF8"``), so each connection to such a database reads as
``SQL_ASCII`` (``readConquestBytes``): psycopg then hands the text over as
bytes, read here as UTF-8, else (bytes that are not UTF-8) as Latin-1.
pacs still sends UTF-8 (psycopg's own str dumper does on ``SQL_ASCII``).
"""

from psycopg.adapt import Loader
from psycopg.pq import Format

_TEXT_TYPES = ("text", "varchar", "bpchar", "name", '"char"')


def decodedText(data):
    """``data``, bytes of a SQL_ASCII database, as text: UTF-8, else Latin-1."""
    data = bytes(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class ConquestTextLoader(Loader):
    """Text of a SQL_ASCII database as ``decodedText``."""

    def load(self, data):
        return decodedText(data)


class ConquestTextBinaryLoader(ConquestTextLoader):
    format = Format.BINARY


def readConquestBytes(dbapiConnection):
    """Have the psycopg connection ``dbapiConnection`` to a SQL_ASCII
    database read its text as it is (``client_encoding SQL_ASCII``) as
    ``decodedText``."""
    for name in _TEXT_TYPES:
        dbapiConnection.adapters.register_loader(name, ConquestTextLoader)
        dbapiConnection.adapters.register_loader(name, ConquestTextBinaryLoader)
    with dbapiConnection.cursor() as cursor:
        cursor.execute("SET client_encoding TO 'SQL_ASCII'")
    dbapiConnection.commit()  # a SET rolled back would be undone
