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
new database, in one transaction there (a row whose key the new table
holds already is left out; queue rows get new ids, in their order), which
also marks them carried (``PacsCarriedOver``: the file, and of each table
the count and the last row of the file carried), then deletes them from the
file, then the marks, and logs the counts.  A removal from the file that
fails, or is cut short by a crash, leaves the marks: the next start only
deletes the rows they name from the file (the unkeyed queue and worklist
rows would be there twice), then the marks, before it carries over what
the file gained since.  The file keeps its image tables, for whoever
switches back.
"""

import os

from sqlalchemy import (BigInteger, Column, Integer, MetaData, String, Table, Text, delete, inspect, literal_column,
                        select)
from sqlalchemy.exc import SQLAlchemyError

from pacscore.db.drivers import findDriver
from pacscore.db.errors import databaseMessage
from pacscore.db.index import EARLIER_PACS, PACS
from pacscore.db.schema import MYSQL_TABLE, createMissingTables

# SQLite's own number of a row in its table, which the marks keep
ROWID = literal_column("rowid")

MARKS = Table("PacsCarriedOver", MetaData(),
              Column("id", Integer, primary_key=True, autoincrement=True),
              Column("Source", Text, nullable=False),
              Column("TableName", String(64), nullable=False),
              Column("LastRow", BigInteger, nullable=False),
              Column("RowCount", Integer, nullable=False), **MYSQL_TABLE)


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


def _copyTable(old, new, table, oldColumns):
    """Copy the rows of ``table`` from ``old`` (where it has the reflected
    ``oldColumns``) to ``new`` (the columns both have, no autoincrement id);
    how many rows ``old`` holds and the ``ROWID`` of its last, or None when
    it holds none."""
    names = {column["name"].lower() for column in oldColumns}
    columns = [column for column in table.columns
               if column.name.lower() in names and not (column.primary_key and column.autoincrement is True)]
    found = old.execute(select(ROWID, *columns).order_by(ROWID)).all()
    if not found:
        return None
    rows = [dict(zip((column.name for column in columns), row[1:])) for row in found]
    key = _keyColumns(table)
    if key and all(column in columns for column in key):
        held = {tuple(row) for row in new.execute(select(*key))}
        rows = [row for row in rows if tuple(row[column.name] for column in key) not in held]
    if rows:
        new.execute(table.insert(), rows)
    return len(found), found[-1][0]


def _copy(source, target, tables, path):
    """Copy the rows of ``tables`` from ``source`` (the file ``path``) to
    ``target``, marked there in the same transaction; the marks, of each
    table that had rows (``_marks``)."""
    marks = {}
    with source.connect() as old, target.begin() as new:
        inspector = inspect(old)
        present = {name.lower(): name for name in inspector.get_table_names()}
        for table in tables:
            if table.name.lower() in present:
                copied = _copyTable(old, new, table, inspector.get_columns(present[table.name.lower()]))
                if copied is not None:
                    marks[table.name] = copied
                    count, last = copied
                    new.execute(MARKS.insert().values(Source=path, TableName=table.name, LastRow=last, RowCount=count))
    return marks


def _marks(target, path):
    """``{table name: (count, last ROWID)}`` of the rows ``target`` took
    from the file ``path`` and still marks."""
    query = select(MARKS.c.TableName, MARKS.c.RowCount, MARKS.c.LastRow).where(MARKS.c.Source == path)
    with target.connect() as connection:
        return {name: (count, last) for name, count, last in connection.execute(query.order_by(MARKS.c.id))}


def _listed(counts):
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def _removeCarried(source, target, tables, path, marks, log):
    """Delete from ``source`` the rows of ``tables`` that ``marks`` (those
    of ``path`` in ``target``) name, then the marks: the count of each
    table's rows deleted, or None when either failed (logged)."""
    carried = _listed({name: count for name, (count, _) in marks.items()})
    try:
        with source.begin() as old:
            deleted = {table.name: old.execute(delete(table).where(ROWID <= marks[table.name][1])).rowcount
                       for table in tables if table.name in marks}
    except SQLAlchemyError as e:
        log.error("The rows {counts} carried over from {path}, the SQLite index of this working folder before the "
                  "switch to this database, could not be removed from that file ({error}): the next start removes "
                  "them there, without carrying them over again", counts=carried, path=path, error=databaseMessage(e))
        return None
    try:
        with target.begin() as new:
            new.execute(delete(MARKS).where(MARKS.c.Source == path))
    except SQLAlchemyError as e:
        log.error("The rows {counts} carried over from {path} were removed from that file, but their mark in this "
                  "database could not be ({error}): the next start removes it", counts=carried, path=path,
                  error=databaseMessage(e))
        return None
    return deleted


def carryOver(source, target, tables, path, log, madeBy):
    """Move the rows of ``tables`` (SQLAlchemy tables of pacs, made already
    in ``target``) from the database of the engine ``source`` (the file
    ``path``) to ``target``'s; logged when there were any.  The rows are
    deleted from ``source`` once ``target`` committed them, and those an
    earlier start committed there but could not delete first.  Nothing is
    moved, with a line saying so, unless ``madeBy(connection)``
    (``Index.madeBy``) tells that pacs made ``source``."""
    with source.connect() as connection:
        if madeBy(connection) not in (PACS, EARLIER_PACS):
            log.info("Nothing is carried over from {path}: pacs did not make that SQLite file (Conquest's own index, "
                     "or another program's), which is left as it is (going back to Conquest, its worklist and UIDMODS "
                     "are there)", path=path)
            return
    with target.begin() as connection:
        createMissingTables(connection, MARKS.metadata, log, [MARKS])
    earlier = _marks(target, path)
    if earlier:
        removed = _removeCarried(source, target, tables, path, earlier, log)
        if removed is None:
            return
        removed = {name: count for name, count in removed.items() if count}
        if removed:
            log.warn("Removed from {path} the rows carried over from it at an earlier start: {counts} (not carried "
                     "over again)", path=path, counts=_listed(removed))
    marks = _copy(source, target, tables, path)
    if marks and _removeCarried(source, target, tables, path, marks, log) is not None:
        log.warn("Carried over from {path}, the SQLite index of this working folder before the switch to this "
                 "database, the rows no stored file holds: {counts} (queued forwards, commitment reports, MPPS, "
                 "UID maps and worklist items are taken up here); removed from that file, whose image tables are "
                 "left as they were", path=path, counts=_listed({name: count for name, (count, _) in marks.items()}))
