"""What an earlier SQLite index kept beside the image tables, carried over
to the database server the archive moved to.

Switching the index from SQLite to PostgreSQL or MySQL (``PostGres = 1``
..., then ``dgate -r``) rebuilds the image tables from the stored files,
but what no file holds stays in the SQLite file of the working folder:
the export queue, the storage commitment reports still to send, the MPPS
steps and their forwards, the UID map of the anonymizing converters, the
worklist (the tables the archive names).  At each start on a database server,
``carryOver`` moves the rows of those tables found in that file
(``previousIndex``), when pacs made it (``Index.madeBy``: Conquest's own
file, or any other, is left as it is, for going back to Conquest), into the
new database, in one transaction there
(a row whose key the new table holds already is left out; queue rows get
new ids, in their order), then deletes them from the file (a crash between
the two commits leaves them in both: the next start carries those without
a key once more), and logs the counts.  The file keeps its image tables,
for whoever switches back.
"""

import os

from sqlalchemy import delete, inspect, select

from pacscore.db.drivers import findDriver
from pacscore.db.index import EARLIER_PACS, PACS


def previousIndex(configuration):
    """``(path, engine)`` of the SQLite index file the working folder of
    ``configuration`` holds in the SQLite driver's default place, or None
    when there is none."""
    sqlite, _ = findDriver("sqlite:", configuration)
    description = f"sqlite:{sqlite.defaultPath}"
    path = sqlite.pathOf(description, configuration)
    if not os.path.isfile(path):
        return None
    return path, sqlite.createEngine(description, configuration)


def _keyColumns(table):
    """The columns that tell ``table``'s rows apart, other than an
    autoincrement id: its primary key, or its first unique index."""
    key = [column for column in table.primary_key if column.autoincrement is not True]
    if key:
        return key
    unique = sorted((index for index in table.indexes if index.unique), key=lambda index: index.name)
    return list(unique[0].columns) if unique else []


def _carryTable(old, new, table, oldColumns):
    """Copy the rows of ``table`` from ``old`` (where it has the reflected
    ``oldColumns``) to ``new`` (the columns both have, no autoincrement id)
    and delete them in ``old``; how many rows there were."""
    names = {column["name"].lower() for column in oldColumns}
    columns = [column for column in table.columns
               if column.name.lower() in names and not (column.primary_key and column.autoincrement is True)]
    order = [column for column in table.primary_key if column.name.lower() in names]
    rows = [dict(row) for row in old.execute(select(*columns).order_by(*order)).mappings()]
    key = _keyColumns(table)
    if key and all(column in columns for column in key):
        held = {tuple(row) for row in new.execute(select(*key))}
        rows = [row for row in rows if tuple(row[column.name] for column in key) not in held]
    if rows:
        new.execute(table.insert(), rows)
    return old.execute(delete(table)).rowcount


def carryOver(source, target, tables, path, log, madeBy):
    """Move the rows of ``tables`` (SQLAlchemy tables of pacs, made already
    in ``target``) from the database of the engine ``source`` (the file
    ``path``) to ``target``'s; logged when there were any.  The rows are
    deleted from ``source`` once ``target`` committed them.  Nothing is
    moved, with a line saying so, unless ``madeBy(connection)``
    (``Index.madeBy``) tells that pacs made ``source``."""
    with source.connect() as connection:
        if madeBy(connection) not in (PACS, EARLIER_PACS):
            log.info("Nothing is carried over from {path}: pacs did not make that SQLite file (Conquest's own index, "
                     "or another program's), which is left as it is (going back to Conquest, its worklist and UIDMODS "
                     "are there)", path=path)
            return
    present = {name.lower(): name for name in inspect(source).get_table_names()}
    counts = {}
    with source.begin() as old:
        with target.begin() as new:
            for table in tables:
                if table.name.lower() in present:
                    columns = inspect(old).get_columns(present[table.name.lower()])
                    counts[table.name] = _carryTable(old, new, table, columns)
    moved = {name: count for name, count in counts.items() if count}
    if moved:
        log.warn("Carried over from {path}, the SQLite index of this working folder before the switch to this "
                 "database, the rows no stored file holds: {counts} (queued forwards, commitment reports, MPPS, "
                 "UID maps and worklist items are taken up here); removed from that file, whose image tables are "
                 "left as they were", path=path,
                 counts=", ".join(f"{name} {count}" for name, count in moved.items()))
