"""The MySQL driver: the index in a MySQL or MariaDB database, through PyMySQL.

Selected by ``--db mysql://USER:PASSWORD@HOST:PORT/DATABASE`` or, from
dicom.ini, by ``MySQL = 1`` (Conquest's flag) with Conquest's keys
``SQLHost``, ``SQLServer``, ``Username`` and ``Password`` (see
pacscore.db.servers).  The database must exist, as with Conquest
(``mysqladmin -u root create conquest``).

Text is utf8mb4 and the index tables compare it byte for byte
(``utf8mb4_bin``, see pacscore.db.schema), so that C-FIND matches as on
the other databases: case-sensitive except where DICOM says otherwise.
Transactions are READ COMMITTED, as PostgreSQL's: a reader sees every
commit made before its statement.  Neither MySQL nor MariaDB indexes
``lower(PatientName)`` (MariaDB has no functional indexes), so a
case-insensitive name search reads the patient table through.
Within ``SQLTimeOut`` seconds a server cut off by the network is noticed:
TCP keepalives for a connection waiting on an answer (PyMySQL turns them on
with the system's timing, two hours; ``connected`` sets ours), and
PyMySQL's ``write_timeout`` for a statement the server does not take.
Reads have no limit, so that a long statement (a conversion of a large
table at start-up, a big ``dgate -r``) is not cut short: the index's own
time limit answers the C-STORE or C-FIND that waits on it.
"""

import socket

from twisted.plugin import IPlugin
from zope.interface import implementer

from pacscore.db.servers import KEEPALIVE_PROBES, DatabaseServerDriver, keepaliveInterval
from pacscore.interfaces import IDatabaseDriver


@implementer(IPlugin, IDatabaseDriver)
class MySQLDriver(DatabaseServerDriver):
    """MySQL or MariaDB through PyMySQL (``pip install 'pacs[mysql]'``)."""

    name = "mysql"
    label = "MySQL"
    description = "MySQL or MariaDB server: mysql://USER:PASSWORD@HOST:PORT/DATABASE"
    flag = "MySQL"
    dbapi = "pymysql"
    extra = "mysql"
    createCommand = "mysqladmin create {database}"

    def selectedBy(self, configuration):
        # PostGres = 1 wins, as over SQLite = 1 (see the SQLite driver).
        return super().selectedBy(configuration) and configuration.ini.get("PostGres", "0").strip() != "1"

    def engineOptions(self, url, timeout):
        connectArgs = {"connect_timeout": self.connectTimeout}
        if timeout is not None:
            connectArgs.update(write_timeout=timeout)
        return url.update_query_dict({"charset": "utf8mb4"}), {
            "isolation_level": "READ COMMITTED", "connect_args": connectArgs}

    def connected(self, dbapiConnection, timeout):
        sock = dbapiConnection._sock  # PyMySQL's socket, keepalives on
        if sock.family != socket.AF_UNIX:
            probe = keepaliveInterval(timeout)
            for option, value in ((socket.TCP_KEEPIDLE, probe), (socket.TCP_KEEPINTVL, probe),
                                  (socket.TCP_KEEPCNT, KEEPALIVE_PROBES)):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


mysqlDriver = MySQLDriver()
