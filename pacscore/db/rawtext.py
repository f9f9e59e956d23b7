"""Text Conquest kept in an SQLite index as the object's own bytes.

Conquest writes a value to the database as the bytes it arrived in
(``UTF8ToDB = 0``, its default): the name ``MÜLLER^ANNA`` of an ISO_IR 100
object is stored ``4D DC 4C ...``, which is not UTF-8, and SQLite hands such
text on as it is.  ``adoptRawText`` rewrites such cells once in UTF-8, taking
them as Latin-1 (ISO_IR 100, the character set those archives hold; Latin-1
decodes any bytes), so that SQL also matches them (``PatientName =
'MÜLLER^ANNA'``); an ``ObjectFile`` is the file's name in bytes, kept the way
the index stores a name that is not UTF-8 (``pacscore.db.filepaths``), so it
still opens the same file.  A value whose rewriting would make two rows'
keys equal (the Patient ID ``JÖRG1`` stored once in Latin-1, once in UTF-8:
two patients for Conquest) stays as it is wherever it appears.

The database's ``user_version`` says what was found: ``UNCHECKED`` (0, not
looked at yet: Conquest's, or one an earlier pacs took over or made),
``ALL_UTF8`` or ``RAW_LEFT``.  The SQLite driver reads text through
``decodedText`` (UTF-8, else Latin-1) unless it is ``ALL_UTF8``: that costs
some 25% on every row fetched, so a database of UTF-8 only is read as SQLite
hands it on.
"""

import os

from sqlalchemy import String, inspect

from pacscore.db.filepaths import ObjectPath, storedPath

UNCHECKED, ALL_UTF8, RAW_LEFT = 0, 1, 2  # PRAGMA user_version
PROGRESS_ROWS = 1000000  # rows checked between two progress lines
LISTED = 10  # values left as they were named, per column


def decodedText(raw):
    """The text of the bytes ``raw``: UTF-8, else Latin-1."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _isRaw(raw):
    """Whether the bytes ``raw`` (NULL: None) are not UTF-8."""
    if raw is None:
        return False
    try:
        raw.decode()
    except UnicodeDecodeError:
        return True
    return False


def _latin1(raw):
    """SQL ``pacs_latin1(CAST(cell AS BLOB))``: the text of a cell that is
    not UTF-8, else NULL."""
    return raw.decode("latin-1") if _isRaw(raw) else None


class _Rewrite:
    """The SQL functions of one rewrite: ``pacs_raw(CAST(cell AS BLOB),
    ...)``, whether a row holds a cell that is not UTF-8 (a progress line
    every ``PROGRESS_ROWS`` rows), and ``pacs_text``/``pacs_path`` of one
    cell, its new value or NULL to keep it (UTF-8, or one of ``kept``)."""

    def __init__(self, log, total, kept):
        self.log = log
        self.total = total
        self.kept = kept
        self.rows = self.cells = 0

    def rowIsRaw(self, *cells):
        self.rows += 1
        if self.rows % PROGRESS_ROWS == 0:
            self.log.info("Checked {rows} of {total} rows for text not in UTF-8", rows=self.rows, total=self.total)
        return any(_isRaw(raw) for raw in cells)

    def text(self, raw):
        if not _isRaw(raw) or raw in self.kept:
            return None
        self.cells += 1
        return raw.decode("latin-1")

    def path(self, raw):
        if not _isRaw(raw):
            return None
        self.cells += 1
        return storedPath(os.fsdecode(raw))


def _keyColumns(inspector, table, names):
    """The text columns of ``table`` present in the database (``names``,
    lower case) that are a key alone: its primary key there or one of its
    unique indexes."""
    keys = [[column.name for column in index.columns] for index in table.indexes if index.unique]
    keys.append(inspector.get_pk_constraint(table.name)["constrained_columns"])
    single = {key[0].lower() for key in keys if len(key) == 1}
    return [column for column in table.columns
            if column.name.lower() in single & names and isinstance(column.type, String)]


def _clashes(connection, present, log):
    """The values (bytes) of key columns that are not UTF-8 and that another
    row of the same column holds already in UTF-8, each logged."""
    inspector = inspect(connection)
    preparer = connection.dialect.identifier_preparer
    kept = set()
    for table, names in present.items():
        for column in _keyColumns(inspector, table, names):
            name = preparer.format_column(column)
            values = connection.exec_driver_sql(
                f"SELECT DISTINCT CAST(a.{name} AS BLOB) FROM {preparer.format_table(table)} AS a WHERE EXISTS "
                f"(SELECT 1 FROM {preparer.format_table(table)} AS b WHERE b.{name} = "
                f"pacs_latin1(CAST(a.{name} AS BLOB)))").scalars().all()
            if not values:
                continue
            kept.update(values)
            listed = ", ".join(value.decode("latin-1") for value in values[:LISTED])
            log.warn("{table}.{column}: {count} of its values, stored by Conquest in the bytes they came in, stay "
                     "so, there and wherever they appear: another row holds each in UTF-8, the same key once "
                     "rewritten: {listed}{more}. SQL does not match them (they read as Latin-1); dgate -r indexes "
                     "their objects again, in UTF-8, under one key",
                     table=table.name, column=column.name, count=len(values), listed=listed,
                     more=f" and {len(values) - LISTED} more" if len(values) > LISTED else "")
    return kept


def adoptRawText(connection, tables, log, recheck=False):
    """On SQLite not checked yet (``UNCHECKED``), or with ``recheck`` where
    values were left as they were, rewrite in UTF-8 (``ObjectFile`` columns
    as the index stores a file name) every text cell of ``tables`` that is
    not UTF-8, in ``connection``'s transaction, but those of a value that
    would clash with a key (``_clashes``); log how many there were and keep
    what was found in ``user_version``.  Elsewhere nothing: PostgreSQL and
    MySQL hold text in the database's encoding."""
    if connection.dialect.name != "sqlite":
        return
    state = connection.exec_driver_sql("PRAGMA user_version").scalar()
    if state == RAW_LEFT and not recheck:
        log.warn("Some text in the index is still as Conquest stored it, not in UTF-8 (named when pacs took it "
                 "over); dgate -r indexes it again, in UTF-8")
        return
    if state == ALL_UTF8:
        return
    inspector = inspect(connection)
    preparer = connection.dialect.identifier_preparer
    present = {table: {column["name"].lower() for column in inspector.get_columns(table.name)}
               for table in tables if inspector.has_table(table.name)}
    total = sum(connection.exec_driver_sql(f"SELECT count(*) FROM {preparer.format_table(table)}").scalar()
                for table in present)
    if total:
        log.info("Checking the {total} rows of {tables} for text not in UTF-8 (Conquest stores each value in the "
                 "character set it came in)", total=total, tables=", ".join(table.name for table in present))
    sqlite = connection.connection.driver_connection
    connection.detach()  # leaves the pool: no other user inherits these functions
    sqlite.create_function("pacs_latin1", 1, _latin1, deterministic=True)
    rewrite = _Rewrite(log, total, _clashes(connection, present, log))
    sqlite.create_function("pacs_raw", -1, rewrite.rowIsRaw)
    sqlite.create_function("pacs_text", 1, rewrite.text)
    sqlite.create_function("pacs_path", 1, rewrite.path)
    for table, names in present.items():
        columns = [column for column in table.columns
                   if column.name.lower() in names and isinstance(column.type, (String, ObjectPath))]
        if not columns:
            continue
        cells = [f"CAST({preparer.format_column(column)} AS BLOB)" for column in columns]
        assignments = ", ".join(
            f"{preparer.format_column(column)} = "
            f"coalesce({'pacs_path' if isinstance(column.type, ObjectPath) else 'pacs_text'}({cell}), "
            f"{preparer.format_column(column)})"
            for column, cell in zip(columns, cells))
        connection.exec_driver_sql(f"UPDATE {preparer.format_table(table)} SET {assignments} "
                                   f"WHERE pacs_raw({', '.join(cells)})")
    connection.exec_driver_sql(f"PRAGMA user_version = {RAW_LEFT if rewrite.kept else ALL_UTF8}")
    if rewrite.cells:
        log.warn("Rewrote in UTF-8 {cells} text cells Conquest had stored in the bytes they came in (read as "
                 "Latin-1; file names kept as they are on disk)", cells=rewrite.cells)
