"""File names a Conquest index from Windows holds with ``\\``.

Conquest on Windows builds ``ObjectFile`` with its own separator
(``0009703828\\1.3.46..._0001_000001_1234.v2``); pacs names a file relative
to its MAG device with ``/``.  ``adoptWindowsPaths`` rewrites them once, when
pacs takes the database over, so every path that reads, regenerates or
deletes a file sees the one name.
"""

from sqlalchemy import func, inspect

from pacscore.db.filepaths import ObjectPath


def adoptWindowsPaths(connection, tables, log):
    """In ``connection``'s transaction, write ``/`` for each ``\\`` of the
    file names (``ObjectPath`` columns) of ``tables`` present in the
    database, and log how many there were."""
    inspector = inspect(connection)
    for table in tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"].lower() for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if not isinstance(column.type, ObjectPath) or column.name.lower() not in present:
                continue
            rows = connection.execute(table.update().where(column.contains("\\", autoescape=True))
                                      .values({column: func.replace(column, "\\", "/")})).rowcount
            if rows:
                log.warn("{table}.{column}: {rows} file names were written with Windows' \\ (Conquest on Windows); "
                         "rewritten with /", table=table.name, column=column.name, rows=rows)
