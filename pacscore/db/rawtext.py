"""Text Conquest kept in an SQLite index as the object's own bytes.

Conquest writes a value to the database as the bytes it arrived in
(``UTF8ToDB = 0``, its default): the name ``MÜLLER^ANNA`` of an ISO_IR 100
object is stored ``4D DC 4C ...``, which is not UTF-8, and SQLite hands such
text on as it is.  ``decodedText`` reads a cell that is not UTF-8 as
Latin-1 (ISO_IR 100, the character set those archives hold; Latin-1 decodes
any bytes); the SQLite driver reads every cell through it.  At the takeover
of a Conquest database ``adoptRawText`` rewrites such cells once in UTF-8, so
that SQL also matches them (``PatientName = 'MÜLLER^ANNA'``); an ``ObjectFile``
is the file's name in bytes, kept the way the index stores a name that is
not UTF-8 (``pacscore.db.filepaths``), so it still opens the same file.
"""

import os

from sqlalchemy import String, inspect

from pacscore.db.filepaths import ObjectPath, storedPath

PROGRESS_ROWS = 1000000  # rows checked between two progress lines


def decodedText(raw):
    """The text of the bytes ``raw``: UTF-8, else Latin-1."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _textOf(raw):
    """SQL ``pacs_text(CAST(cell AS BLOB))``: ``decodedText``, NULL kept."""
    return None if raw is None else decodedText(raw)


def _pathOf(raw):
    """SQL ``pacs_path(CAST(cell AS BLOB))``: what the index stores for a
    file named by the bytes ``raw``, NULL kept."""
    return None if raw is None else storedPath(os.fsdecode(raw))


class _RawCells:
    """SQL ``pacs_raw(CAST(cell AS BLOB), ...)``: whether a row holds a cell
    that is not UTF-8; counts the rows seen and the cells found, with a
    progress line every ``PROGRESS_ROWS`` rows."""

    def __init__(self, log, total):
        self.log = log
        self.total = total
        self.rows = self.cells = 0

    def __call__(self, *cells):
        self.rows += 1
        if self.rows % PROGRESS_ROWS == 0:
            self.log.info("Checked {rows} of {total} rows for text not in UTF-8", rows=self.rows, total=self.total)
        found = 0
        for raw in cells:
            if raw is not None:
                try:
                    raw.decode()
                except UnicodeDecodeError:
                    found += 1
        self.cells += found
        return found > 0


def adoptRawText(connection, tables, log):
    """On SQLite, rewrite in UTF-8 (``decodedText``; ``ObjectFile`` columns
    as the index stores a file name) every text cell of ``tables`` that is
    not UTF-8, in ``connection``'s transaction, and log how many there were.
    Elsewhere nothing: PostgreSQL and MySQL hold text in the database's
    encoding."""
    if connection.dialect.name != "sqlite":
        return
    inspector = inspect(connection)
    preparer = connection.dialect.identifier_preparer
    present = {table: {column["name"].lower() for column in inspector.get_columns(table.name)}
               for table in tables if inspector.has_table(table.name)}
    total = sum(connection.exec_driver_sql(f"SELECT count(*) FROM {preparer.format_table(table)}").scalar()
                for table in present)
    log.info("Checking the {total} rows of {tables} for text not in UTF-8 (Conquest stores each value in the "
             "character set it came in)", total=total, tables=", ".join(table.name for table in present))
    check = _RawCells(log, total)
    sqlite = connection.connection.driver_connection
    connection.detach()  # leaves the pool: no other user inherits these functions
    sqlite.create_function("pacs_raw", -1, check)
    sqlite.create_function("pacs_text", 1, _textOf, deterministic=True)
    sqlite.create_function("pacs_path", 1, _pathOf, deterministic=True)
    for table, names in present.items():
        columns = [column for column in table.columns
                   if column.name.lower() in names and isinstance(column.type, (String, ObjectPath))]
        if not columns:
            continue
        cells = [f"CAST({preparer.format_column(column)} AS BLOB)" for column in columns]
        assignments = ", ".join(
            f"{preparer.format_column(column)} = "
            f"{'pacs_path' if isinstance(column.type, ObjectPath) else 'pacs_text'}({cell})"
            for column, cell in zip(columns, cells))
        connection.exec_driver_sql(f"UPDATE {preparer.format_table(table)} SET {assignments} "
                                   f"WHERE pacs_raw({', '.join(cells)})")
    if check.cells:
        log.warn("Rewrote in UTF-8 {cells} text cells Conquest had stored in the bytes they came in (read as "
                 "Latin-1; file names kept as they are on disk)", cells=check.cells)
