"""The PostgreSQL driver: the index in a PostgreSQL database, through psycopg 3.

Selected by ``--db postgresql://USER:PASSWORD@HOST:PORT/DATABASE`` or, from
dicom.ini, by ``PostGres = 1`` (Conquest's flag) with Conquest's keys
``SQLHost``, ``SQLServer``, ``Username`` and ``Password`` (see
pacscore.db.servers).  The database must exist, as with Conquest
(``createdb conquest``).
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from pacscore.db.servers import DatabaseServerDriver
from pacscore.interfaces import IDatabaseDriver


@implementer(IPlugin, IDatabaseDriver)
class PostgreSQLDriver(DatabaseServerDriver):
    """PostgreSQL through psycopg 3 (``pip install 'pacs[postgresql]'``)."""

    name = "postgresql"
    label = "PostgreSQL"
    description = "PostgreSQL server: postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    flag = "PostGres"
    dbapi = "psycopg"
    extra = "postgresql"

    def engineOptions(self, url):
        return url, {"connect_args": {"connect_timeout": self.connectTimeout}}


postgresqlDriver = PostgreSQLDriver()
