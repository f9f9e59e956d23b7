"""Text Conquest kept in an SQLite index as the object's own bytes.

Conquest writes a value to the database as the bytes it arrived in
(``UTF8ToDB = 0``, its default): the name ``MÜLLER^ANNA`` of an ISO_IR 100
object is stored ``4D DC 4C ...``, which is not UTF-8, and SQLite hands such
text on as it is.  ``adoptRawText`` rewrites such cells once in UTF-8, so that
SQL also matches them (``PatientName = 'MÜLLER^ANNA'``): each row's cells
read in the Specific Character Set one file of its patient declares (the
header of one file per patient read up to (0008,0005): ISO_IR 144 on a
Russian site, ISO_IR 100 on most), else, where no file can be read or its
bytes are not valid there, as Latin-1 (which decodes any bytes); an
``ObjectFile`` is the file's name in bytes, kept the way the index stores
a name that is not UTF-8 (``pacscore.db.filepaths``), so it still opens the
same file.  A value whose rewriting would make two rows'
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
from collections import Counter

from pydicom.valuerep import TEXT_VR_DELIMS
from sqlalchemy import String, inspect

from pacscore.db.filepaths import ObjectPath, pathOf, storedPath
from pacscore.dicom.charsetterms import convert_encodings
from pacscore.db.schema import PATIENT_ID_TAG, Tables
from pacscore.storage.codeextensions import decodeText, textFits

UNCHECKED, ALL_UTF8, RAW_LEFT = 0, 1, 2  # PRAGMA user_version
PROGRESS_ROWS = 1000000  # rows checked between two progress lines
LISTED = 10  # values left as they were named, per column
FILES_TRIED = 5  # files of one patient whose headers are read, at most, for its character set
LATIN_1 = "Latin-1"  # what a cell no file's character set decodes is read as
LATIN1_HINT = (". Those read as Latin-1 had no file of their patient that could be read, or one whose Specific "
               "Character Set they are not valid in: where the site's text is not Latin-1 (a Russian, Greek, "
               "Czech site ...) they are wrong until dgate -r indexes their objects again")


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


def _anyRaw(*cells):
    """SQL ``pacs_anyraw(CAST(cell AS BLOB), ...)``: whether a cell is not UTF-8."""
    return any(_isRaw(raw) for raw in cells)


class _CharacterSets:
    """The SQL function ``pacs_decoded(CAST(cell AS BLOB), CAST(patient AS
    BLOB))``: the text of a cell that is not UTF-8 (else NULL), read in the
    character set of the files of the row's ``patient`` (``encodings``,
    ``{patient: (Specific Character Set, Python encodings)}``), else as
    Latin-1."""

    def __init__(self, encodings):
        self.encodings = encodings

    def decoded(self, raw, patient):
        if not _isRaw(raw):
            return None
        return self.text(raw, patient)[0]

    def text(self, raw, patient):
        """``(text, character set it was read in)`` of the raw cell ``raw``."""
        found = self.encodings.get(patient)
        if found is not None:
            characterSet, encodings = found
            if textFits(raw, encodings):
                return decodeText(raw, encodings, TEXT_VR_DELIMS), characterSet
        return raw.decode("latin-1"), LATIN_1


class _Rewrite:
    """The SQL functions of one rewrite: ``pacs_raw(CAST(cell AS BLOB),
    ...)``, whether a row holds a cell that is not UTF-8 (a progress line
    every ``PROGRESS_ROWS`` rows), and ``pacs_text(cell, patient)``/``pacs_path``
    of one cell, its new value (``_CharacterSets``) or NULL to keep it (UTF-8,
    or one of ``kept``)."""

    def __init__(self, log, total, kept, characterSets):
        self.log = log
        self.total = total
        self.kept = kept
        self.characterSets = characterSets
        self.rows = self.cells = 0
        self.readIn = Counter()  # cells by the character set they were read in

    def rowIsRaw(self, *cells):
        self.rows += 1
        if self.rows % PROGRESS_ROWS == 0:
            self.log.info("Checked {rows} of {total} rows for text not in UTF-8", rows=self.rows, total=self.total)
        return _anyRaw(*cells)

    def text(self, raw, patient):
        if not _isRaw(raw) or raw in self.kept:
            return None
        self.cells += 1
        text, characterSet = self.characterSets.text(raw, patient)
        self.readIn[characterSet] += 1
        return text

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


def _patientColumns(connection, tables, present, layout):
    """``{table: its Patient ID column, quoted}`` of the ``tables`` (of
    ``layout``) ``present`` where dicom.sql gives one and the database holds it."""
    preparer = connection.dialect.identifier_preparer
    columns = {}
    for level, table in zip(Tables._fields, tables):
        names = {column.name for column in getattr(layout, level) if column.tag == PATIENT_ID_TAG}
        for column in table.columns:
            if column.name in names and column.name.lower() in present.get(table, ()):
                columns[table] = preparer.format_column(column)
    return columns


def _patientCell(patientColumns, table, alias=""):
    """The SQL of a row's Patient ID, as bytes, or NULL."""
    column = patientColumns.get(table)
    return f"CAST({alias}{column} AS BLOB)" if column else "NULL"


def _textCells(connection, table, names):
    """The columns of ``table`` the rewrite looks at (text and file names
    present in the database), and their cells as bytes in SQL."""
    preparer = connection.dialect.identifier_preparer
    columns = [column for column in table.columns
               if column.name.lower() in names and isinstance(column.type, (String, ObjectPath))]
    return columns, [f"CAST({preparer.format_column(column)} AS BLOB)" for column in columns]


def _characterSets(connection, tables, present, patientColumns, characterSetOf, log):
    """``{patient (bytes): (Specific Character Set, Python encodings)}`` of
    the patients a row holding text not in UTF-8 names, each from the
    header of the first of the patient's files (``characterSetOf(deviceName,
    objectFile)``, None for one that cannot be read or declares none) that
    declares one, of FILES_TRIED at most; a patient none of whose files
    declares one that pydicom knows is left out (read as Latin-1)."""
    image = tables.image
    if characterSetOf is None or image not in patientColumns:
        return {}
    preparer = connection.dialect.identifier_preparer
    patients = set()
    for table, column in patientColumns.items():
        cells = _textCells(connection, table, present[table])[1]
        patients.update(connection.exec_driver_sql(
            f"SELECT DISTINCT CAST({column} AS BLOB) FROM {preparer.format_table(table)} "
            f"WHERE pacs_anyraw({', '.join(cells)})").scalars())
    patients.discard(None)
    found, answered = {}, set()
    # up to FILES_TRIED files of each patient, in one pass (Conquest's DICOMImages has no index on its
    # patient column), until one that can be read declares a set
    files = connection.exec_driver_sql(
        f"SELECT patient, deviceName, objectFile FROM (SELECT CAST({patientColumns[image]} AS BLOB) AS patient, "
        f"CAST(DeviceName AS BLOB) AS deviceName, CAST(ObjectFile AS BLOB) AS objectFile, "
        f"row_number() OVER (PARTITION BY {patientColumns[image]}) AS n "
        f"FROM {preparer.format_table(image)} WHERE ObjectFile IS NOT NULL) WHERE n <= {FILES_TRIED}")
    for patient, deviceName, objectFile in files:
        if patient not in patients or patient in answered:
            continue
        characterSet = characterSetOf(decodedText(deviceName or b""), _filePath(objectFile))
        if not characterSet:
            continue
        answered.add(patient)
        try:
            found[patient] = (characterSet, convert_encodings(characterSet.split("\\")))
        except ValueError as e:
            log.warn("Patient {patient}: its files' Specific Character Set {characterSet!r} cannot be used ({error}); "
                     "its text not in UTF-8 is read as Latin-1", patient=decodedText(patient),
                     characterSet=characterSet, error=e)
    return found


def _filePath(raw):
    """The path an ``ObjectFile`` cell (bytes) names."""
    return pathOf(raw.decode()) if not _isRaw(raw) else os.fsdecode(raw)


def _clashes(connection, present, patientColumns, log):
    """The values (bytes) of key columns that are not UTF-8 and that another
    row of the same column holds already in UTF-8 (once rewritten:
    ``pacs_decoded``), each logged."""
    inspector = inspect(connection)
    preparer = connection.dialect.identifier_preparer
    kept = set()
    for table, names in present.items():
        for column in _keyColumns(inspector, table, names):
            name = preparer.format_column(column)
            values = connection.exec_driver_sql(
                f"SELECT DISTINCT CAST(a.{name} AS BLOB) FROM {preparer.format_table(table)} AS a WHERE EXISTS "
                f"(SELECT 1 FROM {preparer.format_table(table)} AS b WHERE b.{name} = "
                f"pacs_decoded(CAST(a.{name} AS BLOB), {_patientCell(patientColumns, table, 'a.')}))"
            ).scalars().all()
            if not values:
                continue
            kept.update(values)
            listed = ", ".join(decodedText(value) for value in values[:LISTED])
            log.warn("{table}.{column}: {count} of its values, stored by Conquest in the bytes they came in, stay "
                     "so, there and wherever they appear: another row holds each in UTF-8, the same key once "
                     "rewritten: {listed}{more}. SQL does not match them (they read as Latin-1); dgate -r indexes "
                     "their objects again, in UTF-8, under one key",
                     table=table.name, column=column.name, count=len(values), listed=listed,
                     more=f" and {len(values) - LISTED} more" if len(values) > LISTED else "")
    return kept


def adoptRawText(connection, tables, log, layout, recheck=False, characterSetOf=None):
    """On SQLite not checked yet (``UNCHECKED``), or with ``recheck`` where
    values were left as they were, rewrite in UTF-8 (``ObjectFile`` columns
    as the index stores a file name) every text cell of ``tables`` (of
    ``layout``) that is not UTF-8, in ``connection``'s transaction, but
    those of a value that would clash with a key (``_clashes``): read in the
    Specific Character Set ``characterSetOf(deviceName, objectFile)`` gives
    of one file of the row's patient (None: unknown), else as Latin-1; log
    how many there were, read in which, and keep what was found in
    ``user_version``.  Elsewhere nothing: PostgreSQL and MySQL hold text in
    the database's encoding."""
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
    sqlite.create_function("pacs_anyraw", -1, _anyRaw, deterministic=True)
    patientColumns = _patientColumns(connection, tables, present, layout)
    characterSets = _CharacterSets(_characterSets(connection, tables, present, patientColumns, characterSetOf, log))
    sqlite.create_function("pacs_decoded", 2, characterSets.decoded, deterministic=True)
    rewrite = _Rewrite(log, total, _clashes(connection, present, patientColumns, log), characterSets)
    sqlite.create_function("pacs_raw", -1, rewrite.rowIsRaw)
    sqlite.create_function("pacs_text", 2, rewrite.text)
    sqlite.create_function("pacs_path", 1, rewrite.path)
    for table, names in present.items():
        columns, cells = _textCells(connection, table, names)
        if not columns:
            continue
        patient = _patientCell(patientColumns, table)
        assignments = ", ".join(
            f"{preparer.format_column(column)} = coalesce("
            + (f"pacs_path({cell})" if isinstance(column.type, ObjectPath) else f"pacs_text({cell}, {patient})")
            + f", {preparer.format_column(column)})"
            for column, cell in zip(columns, cells))
        connection.exec_driver_sql(f"UPDATE {preparer.format_table(table)} SET {assignments} "
                                   f"WHERE pacs_raw({', '.join(cells)})")
    connection.exec_driver_sql(f"PRAGMA user_version = {RAW_LEFT if rewrite.kept else ALL_UTF8}")
    if rewrite.cells:
        log.warn("Rewrote in UTF-8 {cells} text cells Conquest had stored in the bytes they came in ({readIn}; "
                 "file names kept as they are on disk){latin1}", cells=rewrite.cells,
                 readIn=", ".join(f"{count} read as Latin-1" if name == LATIN_1 else f"{count} read in {name}"
                                  for name, count in sorted(rewrite.readIn.items(), key=lambda i: i[0] == LATIN_1)),
                 latin1=LATIN1_HINT if rewrite.readIn[LATIN_1] else "")
