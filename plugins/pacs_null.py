"""The NULL driver: no image index, as Conquest's NULL driver (manual,
"NULL Driver"): for image receivers that keep no database and for routers.

Selected by ``--db null:`` (or ``null:PATH``) or, from dicom.ini, by an
empty ``SQLServer`` (the key present with no value: "Empty for NULL
driver"), whatever the PostGres/MySQL/SQLite flags say.  Every write to the
patient, study, series, image and worklist tables is accepted and
discarded, so every query (C-FIND, C-MOVE, C-GET, the web pages, QIDO-RS,
worklist) finds nothing; objects are still written to the MAG devices and
made durable before Success, and ``dgate -r`` can build a real index from
them later under another driver.

What a router needs to survive a restart still persists, in an SQLite file
(``PATH``, default ``./data/dbase/null.db3``, relative to the working
folder): the export queue (forwards not yet sent), the UID map of the
anonymizing converters, the pending flushes.  Its index tables stay empty:
a trigger deletes what each insert adds.  An image-level forward of a
converter line keeps the object's file with the queued action
(``ExportQueue.objectPaths``), since no index can find it.
"""

from sqlalchemy import event
from twisted.plugin import IPlugin
from zope.interface import implementer

from pacscore.db.drivers import namesNoDatabase
from pacscore.interfaces import IDatabaseDriver
from plugins.pacs_sqlite import SQLiteDriver


@implementer(IPlugin, IDatabaseDriver)
class NullDriver(SQLiteDriver):
    """No index: the index tables of an SQLite file never keep a row."""

    name = "null"
    description = ("no index (Conquest's NULL driver, empty SQLServer): queries find nothing; "
                   "null: or null:PATH (the export queue's SQLite file)")
    defaultPath = "./data/dbase/null.db3"
    keepsIndex = False

    def selectedBy(self, configuration):
        return namesNoDatabase(configuration)

    def urlFromConfiguration(self, configuration):
        return "null:" + configuration.resolvePath(self.defaultPath)

    def pathOf(self, description, configuration):
        if description.rstrip(":/") == self.name:
            description = "null:" + self.defaultPath
        return super().pathOf(description, configuration)

    def indexTablesBuilt(self, metadata, tables):
        """Whenever ``metadata`` creates tables (start-up, ``dgate -i``), make
        sure each table of ``tables`` deletes every row inserted into it."""

        def keepEmpty(target, connection, **kw):
            quote = connection.dialect.identifier_preparer.quote
            for table in tables:
                connection.exec_driver_sql(
                    f"CREATE TRIGGER IF NOT EXISTS {quote('PacsNull' + table.name)} AFTER INSERT ON "
                    f"{quote(table.name)} BEGIN DELETE FROM {quote(table.name)}; END")

        event.listen(metadata, "after_create", keepEmpty)


nullDriver = NullDriver()
