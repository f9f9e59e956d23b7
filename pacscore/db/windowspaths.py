"""File names a Conquest index from Windows holds with ``\\``.

Conquest on Windows builds ``ObjectFile`` with its own separator
(``0009703828\\1.3.46..._0001_000001_1234.v2``); pacs names a file relative
to its MAG device with ``/``.  ``adoptWindowsPaths`` rewrites them once, when
pacs takes the database over, so every path that reads, regenerates or
deletes a file sees the one name; ``holdsWindowsPaths`` finds, at each
start, an index an earlier pacs took over without rewriting them.
"""

from sqlalchemy import func, inspect, select

from pacscore.db.filepaths import ObjectPath

SAMPLE = 100  # file names of each column looked at on each start


def holdsWindowsPaths(connection, columns):
    """Whether one of the first ``SAMPLE`` file names of a column of
    ``columns`` (``pathColumns``) has a ``\\``: a bounded look (the oldest
    rows, Conquest's, first on SQLite)."""
    return any("\\" in (name or "") for table, column in columns
               for name in connection.execute(select(column).limit(SAMPLE)).scalars())


def adoptWindowsPaths(connection, columns, log):
    """In ``connection``'s transaction, write ``/`` for each ``\\`` of the
    file names of ``columns`` (``pathColumns``), and log how many there
    were."""
    for table, column in columns:
        rows = connection.execute(table.update().where(column.contains("\\", autoescape=True))
                                  .values({column: func.replace(column, "\\", "/")})).rowcount
        if rows:
            log.warn("{table}.{column}: {rows} file names were written with Windows' \\ (Conquest on Windows); "
                     "rewritten with /", table=table.name, column=column.name, rows=rows)


def pathColumns(connection, tables):
    """A list of ``(table, column)``, each ``ObjectPath`` column of
    ``tables`` the database has."""
    inspector, columns = inspect(connection), []
    for table in tables:
        if inspector.has_table(table.name):
            present = {column["name"].lower() for column in inspector.get_columns(table.name)}
            columns.extend((table, column) for column in table.columns
                           if isinstance(column.type, ObjectPath) and column.name.lower() in present)
    return columns
