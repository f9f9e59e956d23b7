"""SQLAlchemy Core tables built from dicom.sql (manual 7.3).

Conquest's table and column names are kept, so an existing Conquest
database (and the SQL in ``ExportFilter`` or the web pages) keeps working.
Every DICOM column is a ``String(length)``; SQL_C_DATE columns hold the
8-character ``YYYYMMDD`` strings Conquest stores.  Conquest's bookkeeping
columns are added to each table, and the image table also records where
the object lives (``DeviceName`` ``MAG0`` + ``ObjectFile`` relative path).

Indexes (what pacscore.db.query relies on): unique on each key, plain on
each link, on the usual search columns and on every PatientID column
(SeriesPat, ImagePat), and on ``lower(PatientName)`` for case-insensitive
name matching, and on ``lower(column)`` of a ``DT_ISTR`` column (matched
case-insensitively) that has one of the others (SQLite and PostgreSQL only;
on MySQL and MariaDB every text column compares byte for byte, utf8mb4_bin).
"""

from typing import NamedTuple

from sqlalchemy import Column, Double, Float, Index, Integer, LargeBinary, MetaData, String, Table, func, inspect
from sqlalchemy.dialects import mysql
from twisted.logger import Logger

from pacscore.db.errors import ValueTooLarge
from pacscore.db.filepaths import OBJECT_FILE_LENGTH, ObjectPath

LEVELS = ("patient", "study", "series", "image")

# Columns that get a non-unique index wherever a table has them.
LEVEL_SEARCHED = ("PatientName", "StudyDate", "AccessionNumber", "Modality")
WORKLIST_SEARCHED = ("AccessionNumber", "PatientID", "PatientName", "StartDate")
# Columns holding this tag get a non-unique index in the four image-level
# tables, whatever their name (DICOMSeries.SeriesPat, DICOMImages.ImagePat):
# queries by patient and the patient-related counts use them.
PATIENT_ID_TAG = 0x00100020
# Columns matched case-insensitively (``lower(column)``, see pacscore.db.query)
# that also get an index on ``lower(column)`` where the database supports
# one: SQLite and PostgreSQL (there with text_pattern_ops, for LIKE 'DOE%').
# The index's info["dialects"] tells Index.createTables the same.
CASE_FOLDED = ("PatientName",)
CASE_FOLDED_DIALECTS = ("sqlite", "postgresql")
# MySQL/MariaDB: Unicode text compared byte for byte, as the other databases
# compare it (their default collations ignore case and accents).
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
# Whole data sets and reference lists: MySQL's BLOB stops at 64 KB.
LARGE_BINARY = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql")
STATEMENT_OVERHEAD = 4096  # bytes of a statement besides its LARGE_BINARY value, at most
ESCAPED = (b"\0", b"\n", b"\r", b"\x1a", b"'", b'"', b"\\")  # sent as two bytes in a MySQL statement


def checkFits(connection, value):
    """Before writing ``value`` (bytes) to a LARGE_BINARY column: on
    MySQL/MariaDB, ValueTooLarge when the statement would be larger than the
    server's max_allowed_packet (the server drops the connection on it;
    the driver sends the value with each byte of ``ESCAPED`` doubled)."""
    if connection.dialect.name != "mysql":
        return
    size = len(value) + sum(value.count(byte) for byte in ESCAPED) + STATEMENT_OVERHEAD
    limit = connection.exec_driver_sql("SELECT @@max_allowed_packet").scalar()
    if size > limit:
        raise ValueTooLarge(size, limit)


class OwnTable:
    """A table of pacs' own in the index database, beside Conquest's:
    ``build(metadata)`` makes it, ``clock()`` dates its rows."""

    log = Logger()
    build = None

    def __init__(self, index, clock):
        self.index = index
        self.clock = clock
        self.metadata = MetaData()
        self.table = self.build(self.metadata)

    def createTables(self):
        with self.index.engine.begin() as connection:
            createMissingTables(connection, self.metadata, self.log)
            upgradeTable(connection, self.table, self.log)


class Tables(NamedTuple):
    """The five index tables."""

    patient: Table
    study: Table
    series: Table
    image: Table
    worklist: Table


def _bookkeepingColumns(level):
    """Conquest's extra columns for one table (fresh objects each call);
    ``info["bookkeeping"]`` tells them from dicom.sql's, ``info["added"]``
    is what the rows get when the column is added to an existing table
    (``addMissingColumns``; else nothing)."""
    names = [("AccessTime", Integer), ("qTimeStamp", Integer), ("qFlags", Integer), ("qSpare", String(64))]
    if level == "image":
        names += [("ObjectFile", ObjectPath(OBJECT_FILE_LENGTH)), ("DeviceName", String(32))]
    return [Column(name, kind, info={"bookkeeping": True, **({"added": "MAG0"} if name == "DeviceName" else {})})
            for name, kind in names]


def _dicomColumn(column):
    """The SQLAlchemy column for one dicom.sql line."""
    length = 8 if column.sqlType == "SQL_C_DATE" else column.length
    return Column(column.name, String(length))


def _indexes(level, tableName, names, tags=()):
    """Unique on the key (first column), plain on the link (last), the
    searched ones and (image-level tables) every PatientID column."""
    unique, plain = [], []
    if level in LEVELS:
        unique.append(names[0])
        if level != "patient":
            plain.append(names[-1])
    searched = WORKLIST_SEARCHED if level == "worklist" else LEVEL_SEARCHED
    plain += [n for n in searched if n in names and n not in unique + plain]
    if level in LEVELS:
        plain += [n for n, tag in zip(names, tags)
                  if tag == PATIENT_ID_TAG and n not in unique + plain]
    return ([Index(f"ux_{tableName}_{n}", n, unique=True) for n in unique]
            + [Index(f"ix_{tableName}_{n}", n) for n in plain])


def _foldedIndexes(table, columns):
    """``ix_<table>_<column>_lower`` on ``lower(column)`` for the CASE_FOLDED
    ``columns`` (dicom.sql's) and the ``DT_ISTR`` ones (matched so too,
    ``Column.foldsCase``) that have an index already."""
    indexed = {column.name for index in table.indexes for column in index.columns}
    for name in dict.fromkeys(c.name for c in columns
                              if c.name in CASE_FOLDED or c.foldsCase and c.name in indexed):
        label = f"{name}_lower"
        Index(f"ix_{table.name}_{label}", func.lower(table.c[name]).label(label),
              postgresql_ops={label: "text_pattern_ops"}, info={"dialects": CASE_FOLDED_DIALECTS}
              ).ddl_if(dialect=CASE_FOLDED_DIALECTS)


def buildTable(level, columns, tableName, metadata):
    """One table: the layout's columns (no sequence markers) + bookkeeping."""
    dicom = [c for c in columns if not c.isSequenceMarker]
    if level in LEVELS and not dicom:
        raise ValueError(f"dicom.sql: table {tableName} has no columns")
    sqlColumns = [_dicomColumn(c) for c in dicom] + _bookkeepingColumns(level)
    seen = set()
    for column in sqlColumns:
        if column.name.lower() in seen:
            raise ValueError(
                f"dicom.sql: table {tableName} has column {column.name!r} twice")
        seen.add(column.name.lower())
    names = [c.name for c in dicom]
    table = Table(tableName, metadata, *sqlColumns,
                  *_indexes(level, tableName, names, [c.tag for c in dicom]), **MYSQL_TABLE)
    _foldedIndexes(table, dicom)
    return table


def buildTables(layout, tableNames, metadata):
    """``Tables`` for a ``DatabaseLayout``; ``tableNames`` maps level -> name."""
    return Tables(**{
        level: buildTable(level, getattr(layout, level), tableNames[level], metadata)
        for level in Tables._fields})


def adoptFoldedTable(connection, table, log):
    """On PostgreSQL, take over the table Conquest made for ``table``.

    Conquest's SQL quotes no names, so PostgreSQL folded them to lower case
    (``dicompatients`` with ``patientid`` ...), where pacs quotes dicom.sql's
    own (``"DICOMPatients"``): without this an existing Conquest database
    would be ignored and empty tables made beside it.  When only the folded
    table exists it and its folded columns are renamed to dicom.sql's names
    (operators' unquoted SQL still finds them: ``rawsql`` quotes it).
    Elsewhere nothing: SQLite and MySQL keep names as written.  In
    ``connection``'s transaction, as the other ``adopt`` functions."""
    folded = table.name.lower()
    if connection.dialect.name != "postgresql" or folded == table.name:
        return
    present = inspect(connection).get_table_names()
    if table.name in present or folded not in present:
        return
    preparer = connection.dialect.identifier_preparer
    columns = {column["name"] for column in inspect(connection).get_columns(folded)}
    connection.exec_driver_sql(f"ALTER TABLE {preparer.quote(folded)} RENAME TO {preparer.format_table(table)}")
    renamed = [column.name for column in table.columns
               if column.name != column.name.lower() and column.name.lower() in columns]
    for name in renamed:
        connection.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} "
                                   f"RENAME COLUMN {preparer.quote(name.lower())} TO {preparer.quote(name)}")
    log.warn("Took over table {folded} (made by Conquest, its names folded to lower case by PostgreSQL) as "
             "{table} with {count} columns renamed to dicom.sql's names", folded=folded, table=table.name,
             count=len(renamed))


def adoptTruncatedColumns(connection, table, log):
    """Rename the columns of ``table``'s table that Conquest made with its
    names cut to ``TruncateFieldNames`` characters (10 by default:
    ``StudyInsta``, ``SOPInstanc``) to dicom.sql's names, so that pacs
    takes over a Conquest database as it is.  Only a name that is the
    beginning of exactly one missing column's name is renamed."""
    if not inspect(connection).has_table(table.name):
        return
    present = [column["name"] for column in inspect(connection).get_columns(table.name)]
    have = {name.lower() for name in present}
    preparer = connection.dialect.identifier_preparer
    renamed = []
    for name in present:
        if any(column.name.lower() == name.lower() for column in table.columns):
            continue
        missing = [column.name for column in table.columns
                   if column.name.lower().startswith(name.lower()) and column.name.lower() not in have]
        if len(missing) != 1:
            continue
        connection.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} "
                                   f"RENAME COLUMN {preparer.quote(name)} TO {preparer.quote(missing[0])}")
        have.add(missing[0].lower())
        renamed.append(f"{name} -> {missing[0]}")
    if renamed:
        log.warn("Took over table {table} with its names cut short (Conquest's TruncateFieldNames): renamed "
                 "{renamed}", table=table.name, renamed=", ".join(renamed))


def adoptCollation(connection, table, log):
    """On MySQL/MariaDB, convert ``table``'s table to utf8mb4 compared byte
    for byte when it exists with another character set or collation (a
    server's case-insensitive default, as tables made by hand or by Conquest
    have): there ``abc`` and ``ABC`` are one Patient ID, and ``Müller``
    ``muller``.  A binary collation tells apart all that the old one did,
    so no key can collide."""
    if connection.dialect.name != "mysql":
        return
    collations = {row[0] for row in connection.exec_driver_sql(
        "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = %s AND COLLATION_NAME IS NOT NULL UNION SELECT TABLE_COLLATION "
        "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (table.name, table.name))}
    wrong = sorted(collations - {MYSQL_TABLE["mysql_collate"]})
    if not wrong:
        return
    connection.exec_driver_sql(f"ALTER TABLE {connection.dialect.identifier_preparer.format_table(table)} "
                               f"CONVERT TO CHARACTER SET utf8mb4 COLLATE {MYSQL_TABLE['mysql_collate']}")
    log.warn("Converted table {table} from {collations} to utf8mb4_bin: values are compared exactly, as DICOM "
             "asks (abc and ABC are two Patient IDs)", table=table.name, collations=", ".join(wrong))


INDEXED_COLUMNS_EMPTY = "in the rows already indexed until 'dgate -r' fills them from the stored files"
WORKLIST_COLUMNS_EMPTY = "in the items there are (orders give new ones values)"


def addMissingColumns(connection, table, log, emptyUntil=INDEXED_COLUMNS_EMPTY):
    """Add to ``table``'s table in the database the columns it lacks, as one
    of an older layout or of a dicom.sql that has since gained columns may:
    pacs's bookkeeping columns (empty; ``DeviceName`` MAG0, where Conquest
    keeps objects) and dicom.sql's (empty as ``emptyUntil`` says); logged.
    A column the database refuses to add fails the start with its error.
    In ``connection``'s transaction."""
    present = {column["name"].lower() for column in inspect(connection).get_columns(table.name)}
    missing = [column for column in table.columns if column.name.lower() not in present]
    for column in missing:
        _addColumn(connection, table, column, column.info.get("added"))
    kept = [column.name for column in missing if column.info.get("bookkeeping")]
    if kept:
        log.warn("Table {table} lacked the bookkeeping columns {columns} (an older layout): added",
                 table=table.name, columns=", ".join(kept))
    filled = [column.name for column in missing if not column.info.get("bookkeeping")]
    if filled:
        log.warn("Table {table} lacked dicom.sql's columns {columns}: added, empty {emptyUntil}",
                 table=table.name, columns=", ".join(filled), emptyUntil=emptyUntil)


WIDTH_KEEPING_DIALECTS = ("postgresql", "mysql")  # SQLite stores text of any length in any column


def matchColumnWidths(connection, table, log):
    """On PostgreSQL and MySQL/MariaDB, which refuse a value longer than
    its column, widen each text column of ``table``'s table that the
    database holds narrower than ``table`` declares (a dicom.sql widened
    since the tables were made, as README advises a site that needs
    more), logged.  A column wider in the database is left as it is (no
    value is cut), with a warning: the index writer cuts values to
    dicom.sql's width.  In ``connection``'s transaction, after
    ``adoptCollation`` (MySQL's MODIFY takes the table's collation)."""
    if connection.dialect.name not in WIDTH_KEEPING_DIALECTS:
        return
    present = {column["name"].lower(): column["type"] for column in inspect(connection).get_columns(table.name)}
    preparer = connection.dialect.identifier_preparer
    for column in table.columns:
        declared = getattr(column.type, "length", None)
        width = getattr(present.get(column.name.lower()), "length", None)
        if declared is None or width is None or declared == width:
            continue
        if declared < width:
            log.warn("Table {table}: column {column} is narrower in dicom.sql ({declared} characters) than in the "
                     "database ({width}): left as it is, its values kept whole; values stored from now are cut to "
                     "{declared} characters", table=table.name, column=column.name, declared=declared, width=width)
            continue
        kind = column.type.compile(dialect=connection.dialect)
        if connection.dialect.name == "mysql":
            change = f"MODIFY COLUMN {preparer.format_column(column)} {kind} {'' if column.nullable else 'NOT '}NULL"
        else:
            change = f"ALTER COLUMN {preparer.format_column(column)} TYPE {kind}"
        connection.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} {change}")
        log.warn("Table {table}: column {column} widened from {width} to {declared} characters, as dicom.sql "
                 "declares it now", table=table.name, column=column.name, width=width, declared=declared)


def _addColumn(connection, table, column, default=None, notNull=False):
    """``ALTER TABLE ... ADD COLUMN`` of ``column``, with a string ``default``
    (which the existing rows get) or none."""
    preparer = connection.dialect.identifier_preparer
    clause = "" if default is None else " DEFAULT '{}'".format(str(default).replace("'", "''"))
    connection.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN "
                               f"{preparer.format_column(column)} {column.type.compile(dialect=connection.dialect)}"
                               f"{' NOT NULL' if notNull else ''}{clause}")


def createMissingTables(connection, metadata, log, tables=None):
    """``metadata.create_all`` of ``tables`` (None: all its tables) in
    ``connection``'s transaction, the tables it makes logged in one line
    (a new database, or one an earlier release made without them)."""
    present = {name.lower() for name in inspect(connection).get_table_names()}
    made = [table.name for table in (metadata.sorted_tables if tables is None else tables)
            if table.name.lower() not in present]
    metadata.create_all(connection, tables=tables)
    if made:
        log.info("Created the table(s) {tables} the index database lacked (a new database, or one of an earlier "
                 "release)", tables=", ".join(made))


def upgradeTable(connection, table, log):
    """Bring ``table``'s table in the database up to ``table``: add each
    column it lacks (one a newer version added; it must be NOT NULL with a
    string default, which the existing rows get), and on MySQL/MariaDB
    widen to DOUBLE the FLOAT columns an older version made for times in
    seconds (single precision: a time of today to the nearest 128 s); what
    it changes logged, one line each.  In ``connection``'s transaction."""
    present = {column["name"].lower(): column["type"] for column in inspect(connection).get_columns(table.name)}
    preparer = connection.dialect.identifier_preparer
    added, widened = [], []
    for column in table.columns:
        name = preparer.format_column(column)
        kind = column.type.compile(dialect=connection.dialect)
        old = present.get(column.name.lower())
        if old is None:
            _addColumn(connection, table, column, column.default.arg, notNull=True)
            added.append(column.name)
        elif (connection.dialect.name == "mysql" and isinstance(column.type, Double)
              and isinstance(old, Float) and not isinstance(old, Double)):
            connection.exec_driver_sql(f"ALTER TABLE {preparer.format_table(table)} MODIFY COLUMN {name} {kind} "
                                       f"{'' if column.nullable else 'NOT '}NULL")
            widened.append(column.name)
    if added:
        log.info("Table {table} lacked {columns} (made by an earlier pacs release): added", table=table.name,
                 columns=", ".join(added))
    if widened:
        log.info("Table {table}: {columns} widened from FLOAT to DOUBLE (made by an earlier pacs release)",
                 table=table.name, columns=", ".join(widened))
