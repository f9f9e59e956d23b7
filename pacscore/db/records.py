"""Image records and Conquest's rules for writing them into the index.

One stored object touches four rows: its patient (keyed by PatientID), study
(StudyInstanceUID), series (SeriesInstanceUID) and image (SOPInstanceUID),
each keyed by its table's first dicom.sql column.  Every column takes its
value from the object by the column's tag, the link columns too (but for
the study's modalities, below).

- A missing row is inserted.
- An existing patient/study/series row gets only the columns whose new value
  is non-empty and differs: a known value is never blanked out.
- An existing image row (the same SOPInstanceUID arrives again) is replaced
  completely, file location included; the previous file is reported as
  ``Replaced`` when it differs, so the caller can delete it.  When the
  image moved to another series, or its series or study to another study
  or patient (a corrected Patient ID), the series, study and patient rows
  left empty are deleted.
- A study row names one patient, a series row one study, an image row one
  series: an object whose study (series) row names another patient
  (study), or whose SOP instance is indexed under another series, is
  refused, as Conquest's UpdateOrAddToTable refuses it ("Refused to enter
  inconsistent link ..."; ``InconsistentLink``), nothing of it written,
  unless that study or series row holds no image but the object's own SOP
  instance, or the series the image row leaves none and is of the
  object's study and patient (a corrected object sent again: the row
  moves; an image never moves to another study or patient with its SOP
  Instance UID, even alone in its series; a command's rewrite of it,
  ``ImageRecord.rewritten``, moves it though the series has others), and
  the record may move rows at all (not a
  copy made with new UIDs: ``ImageRecord.relink``): an unrelated object
  that happens to have the SOP Instance UID of one image of a series does
  not replace it.  A patient row is deleted only once no study, series or
  image row names it.
- A series, study or patient row that a delete leaves with images takes
  the values of the one stored last (the newest qTimeStamp, then the
  greatest file name), as if it were stored again
  (``Upserter.refreshParents``), as ``dgate -r`` would make it: not those
  of the deleted object.
- The study's modalities column (dicom.sql's StudyModality, tag 0008,0061)
  is made of the objects' Modality (0008,0060), as Conquest's
  UpdateOrAddToTable makes it: a new study row gets the object's Modality;
  a Modality not yet one of the row's backslash-separated values is put in
  front of them (``MR`` into ``CT\\SR`` makes ``MR\\CT\\SR``; ``CT`` is not
  in ``RTSTRUCT``); an object without one leaves the column as it is.
  A series row takes the Modality of its last object, so an object of
  another Modality in a series (a screen capture into a CT series) is
  merged like any other: the study keeps the modality of its other
  objects.  A study that loses a series (deleted, emptied by an object
  sent again into another series, moved to another study) gets the column
  made again of its series' modalities, as ``dgate -r`` would make it
  (``Upserter.rebuildModalities``), so that it never holds the modality
  of a series the study no longer has.
  A merged value is written only over the one it was merged into: when
  another writer (another node sharing the database) merged a modality in
  since, the row is read again, locked, and the modality merged into it, so
  that none is lost.
- Values are stored without the spaces that pad them: leading and
  trailing ones, of each of a multi-valued one's values, but an LT, ST or
  UT value's leading ones, which count (PS3.5 6.2); a C-FIND key loses
  the same (``ImageRecord``, ``query.unpaddedValues``), so that a Patient
  ID sent as `` LEAD`` is found, and is one patient with ``LEAD``.
- Values longer than their column are truncated (as Conquest does), and
  values holding a NUL cut there (where Conquest's C strings end; the
  file keeps its bytes): the first time for each column a warning, then
  debug lines; the columns AllowTruncate names only ever get debug
  lines.  A merged modalities value is no exception (Conquest leaves it
  to the database server).  So, with ``?`` in their place, are the
  characters a database in another encoding than UTF8 cannot hold
  (``pacscore.db.repertoire``).
  Keys are: a record whose PatientID, StudyInstanceUID, SeriesInstanceUID
  or SOPInstanceUID (or link to one) is longer than its column, holds
  a NUL or a character the database cannot hold is refused (``checkKeys``), whatever AllowTruncate says, since cut it would be the
  key of another row: two SOP instances sharing their first 64 characters
  would be one, the second replacing (and removing the file of) the first.
- While a regen re-enters the files (its tables cleared), a stored record
  whose study or series row is not entered yet cannot be checked for a
  link to another patient (study) whose files are not re-entered yet:
  ``Upserter.checkLinks`` and ``upsertImages`` with ``entered`` refuse it
  (``NotReentered``).
"""

import time
from dataclasses import dataclass
from typing import NamedTuple

from pydicom.datadict import dictionary_VR
from sqlalchemy import Integer, bindparam, exists, func, or_, select, text
from twisted.logger import Logger

from pacscore.db.sqlfunctions import distinctValues
from pacscore.db.direct import DirectKeyList, DirectStatement
from pacscore.db.filepaths import storedPath
from pacscore.db.query import MODALITIES_IN_STUDY, MODALITY, cutAtNul, cutToColumn, unpaddedValues
from pacscore.db.repertoire import encodingOf, held, holds, storedLength
from pacscore.db.schema import LEVELS
from pacscore.dicom.datetimes import normalised
from pacscore.firstwarned import FirstWarned
from pacscore.logvalues import shown


@dataclass
class ImageRecord:
    """What the index needs to know about one stored object.

    ``attrs`` maps tags (``0xGGGGEEEE``) to values as read from the object:
    stripped, multiple values joined with a backslash; the leading spaces
    that pad a value (all VRs but LT, ST, UT: PS3.5 6.2), which the readers
    keep as pydicom does, are dropped here, as ``valuesOf`` drops a key's.  ``objectFile`` is the
    path relative to the MAG device ``deviceName``, with "/" separators.
    ``callingAE``/``calledAE`` of the association it came on (export
    converter filters); not indexed.  ``converters``: whether the export
    converter lines see it (mirror copies are made regardless).
    ``actions``: the ``PacsForwards`` rows its import converter lines
    queued, written in its index transaction (``ExportQueue.enqueueJobs``).
    ``relink``: whether it may move the study or series row that holds
    only its own SOP instance to another patient or study, its image row
    out of the series it alone is in (a corrected
    object); not a copy whose new UIDs the UID map made for the first
    patient it was copied to.  ``fetchedFrom``: the AE title of the
    archive a virtual server fetched it from, which its export converter
    lines forward nothing to (``IncomingObject.fetchedFrom``).
    ``rewritten``: a stored object that a control command's script
    changed, its own image row: it may leave a series that has other
    images for another series of its study (``modifyimage`` splitting a
    series, ``modifyseries`` giving one a new UID object by object).
    """

    attrs: dict[int, str]
    deviceName: str
    objectFile: str
    callingAE: str = ""
    calledAE: str = ""
    converters: bool = True
    actions: tuple = ()
    relink: bool = True
    fetchedFrom: str = ""
    rewritten: bool = False

    def __post_init__(self):
        unpadded = {tag: "\\".join(unpaddedValues(value, dictionaryVR(tag))) for tag, value in self.attrs.items()
                    if " " in value and (value[0] == " " or value[-1] == " " or "\\ " in value or " \\" in value)}
        if unpadded:
            self.attrs = {**self.attrs, **unpadded}


_knownVRs = {}
"""The VRs ``dictionaryVR`` found, by tag: only tags pydicom's dictionary
knows, so that any number of private or unknown tags does not grow it."""


def dictionaryVR(tag):
    """The VR of ``tag`` by pydicom's dictionary (an ambiguous one as it
    spells it, "US or SS"), "" when it has none (a private or unknown
    tag)."""
    vr = _knownVRs.get(tag)
    if vr is None:
        try:
            vr = _knownVRs[tag] = dictionary_VR(tag)
        except KeyError:
            return ""
    return vr


class InconsistentLink(ValueError):
    """An object's study (series) row names another patient (study)."""

    def __init__(self, table, keyName, key, link, old, refused):
        super().__init__(f"Refused to enter inconsistent link {link} into {table}: {keyName} = '{key}', "
                         f"Old = '{old}', Refused = '{refused}'")


class NotReentered(Exception):
    """A store while a regen re-enters the files: its study or series row,
    which its links are checked against, is not entered yet."""

    def __init__(self, table, keyName, key):
        super().__init__(f"the index is being rebuilt (regen): stores of studies not re-entered yet are refused "
                         f"until it ends (no {table} row {keyName} = '{key}' yet)")


class Replaced(NamedTuple):
    """The file a re-stored image used to point at."""

    deviceName: str
    objectFile: str


SELECT_CHUNK = 500  # keys per SELECT ... IN (SQLite's variable limit)

# SQLite's count of the commits other connections made to the database
# since this one opened it (PRAGMA data_version)
DATA_VERSION = DirectStatement(text("PRAGMA data_version").columns(data_version=Integer))


class _Field(NamedTuple):
    name: str
    tag: int
    source: int  # the tag of the object's attribute that the value comes from
    length: int
    dateTime: str | None  # "DA" (an SQL_C_DATE column), "TM" (DT_TIME): stored ``normalised``; else None


def mergedModalities(known, modality):
    """The study modalities ``known`` (backslash-separated) with the
    object's ``modality`` merged in as Conquest merges it: put in front
    unless it is one of them already."""
    known = known or ""
    if not modality or f"\\{modality}\\" in f"\\{known}\\":
        return known
    return f"{modality}\\{known}" if known else modality


class Truncations:
    """The log lines of values cut to the length of their column of the
    table ``table`` (a name): a column's first is a warning (never for the
    columns ``allowTruncate`` names, lower case), the next ones debug lines
    (``FirstWarned``)."""

    def __init__(self, table, allowTruncate=frozenset()):
        self.table = table
        self.allowTruncate = allowTruncate
        self.warned = FirstWarned()  # of the columns

    def report(self, log, column, length, value):
        """Log with ``log`` that ``value`` was cut to ``column``'s ``length``."""
        self._report(log, column, "truncated to {length} characters", value, length=length)

    def reportNul(self, log, column, value):
        """Log with ``log`` that ``value`` was cut at its NUL (``cutAtNul``)."""
        self._report(log, column, "cut at a NUL", value)

    def reportUnheld(self, log, column, value, encoding):
        """Log with ``log`` that ``value`` has characters the database (in
        ``encoding``) cannot hold, written as ``?``."""
        self._report(log, column, "has characters the database's {encoding} cannot hold, indexed as ?", value,
                     encoding=encoding)

    def _report(self, log, column, cut, value, **fields):
        """Log the ``cut`` (a format) of ``value``: ``column``'s first cut,
        of either kind, a warning."""
        text = "{table}.{column} " + cut + ": {value}"
        fields.update(table=self.table, column=column, value=shown(value))
        if column.lower() in self.allowTruncate:
            log.debug(text, **fields)
        else:
            self.warned.report(log, column, text, "further ones of this column are logged at debug level; "
                               "AllowTruncate lists columns never warned of", **fields)


class Level:
    """One of the four image-level tables, ready for upserts."""

    log = Logger()

    def __init__(self, name, table, columns, allowTruncate=frozenset(), dialect=None):
        self.name = name
        self.table = table
        self.dialect = dialect  # of the database, which may not hold every character (pacscore.db.repertoire)
        self.truncations = Truncations(table.name, allowTruncate)
        merged = MODALITIES_IN_STUDY if name == "study" else None  # made of Modality (module docstring)
        self.fields = [_Field(c.name, c.tag, MODALITY if c.tag == merged else c.tag,
                              table.c[c.name].type.length, _dateTimeVR(c)) for c in columns]
        self.tags = tuple(f.source for f in self.fields)
        self.modalities = next((f for f in self.fields if f.tag == merged), None)  # the _Field, or None
        self.keyName = self.fields[0].name
        # the columns that key rows: the table's key, and the link to the row above (not for patients)
        self.keyFields = self.fields[:1] if name == "patient" else (self.fields[0], self.fields[-1])
        self.keyTag = self.fields[0].tag
        self.key = table.c[self.keyName]
        self.selectRow = DirectStatement(select(*(table.c[f.name] for f in self.fields)).where(
            self.key == bindparam("b_key")))
        self.lockRow = DirectStatement(self.selectRow.statement.with_for_update())
        self.selectKeys = DirectKeyList(select(self.key), self.key, SELECT_CHUNK)
        # images: where each file is, and its series
        self.selectLocations = None if name != "image" else DirectKeyList(
            select(self.key, table.c.DeviceName, table.c.ObjectFile, table.c[self.fields[-1].name]), self.key,
            SELECT_CHUNK)
        self.insert = DirectStatement(table.insert())
        self.update = DirectStatement(table.update().where(self.key == bindparam("b_key")))
        self.updateMerged = None if self.modalities is None else DirectStatement(self.update.statement.where(
            table.c[self.modalities.name].is_not_distinct_from(bindparam("b_modalities"))))

    def values(self, attrs):
        """Column name -> value for this table, dates as YYYYMMDD and times
        as HHMMSS.FFFFFF (ACR-NEMA's ``2024.03.01`` and ``12:30:00`` too),
        cut at a NUL, truncated."""
        values = {}
        for name, _, source, length, dateTime in self.fields:
            value = attrs.get(source, "")
            if dateTime:
                value = normalised(value, dateTime)
            if "\0" in value:
                self.truncations.reportNul(self.log, name, value)
                value = cutAtNul(value)
            if not holds(self.dialect, value):
                self.truncations.reportUnheld(self.log, name, value, encodingOf(self.dialect))
                value = held(self.dialect, value)
            values[name] = value if storedLength(self.dialect, value) <= length else self._truncated(name, length,
                                                                                                     value)
        return values

    def row(self, connection, key, lock=False):
        """The row ``key``, column name -> value, or None; ``lock``: locked
        until the transaction ends (SELECT ... FOR UPDATE)."""
        rows = (self.lockRow if lock else self.selectRow).execute(connection, {"b_key": key})
        return dict(zip((field.name for field in self.fields), rows[0])) if rows else None

    def write(self, connection, key, known, values):
        """UPDATE the row ``key``, last seen as ``known``, with the changes
        ``values`` make to it; ``(known, changes)`` as written.  A merged
        modalities value is written only where the row still has the one
        it was merged into; when another writer merged one in since, the
        row is read again, locked (SQLite's writer holds the whole database
        from its first UPDATE on), and ``values`` go into it: that row is
        the ``known`` returned, None if it is gone (nothing written)."""
        changes = self.changes(known, values)
        if self.modalities is not None and self.modalities.name in changes:
            guarded = {**changes, "b_key": key, "b_modalities": known[self.modalities.name]}
            if self.updateMerged.execute(connection, guarded):
                return known, changes
            known = self.row(connection, key, lock=True)
            if known is None:
                return None, {}
            changes = self.changes(known, values)
        if changes:
            self.update.execute(connection, {**changes, "b_key": key})
        return known, changes

    def changes(self, known, values):
        """The columns of ``values`` that change the existing row ``known``:
        those non-empty and different, the modalities merged into the known."""
        if self.modalities is not None:
            name, length = self.modalities.name, self.modalities.length
            merged = mergedModalities(known[name], values[name])
            values = {**values, name: merged if storedLength(self.dialect, merged) <= length
                      else self._truncated(name, length, merged)}
        return {name: value for name, value in values.items() if value and value != known[name]}

    def _truncated(self, name, length, value):
        """``value`` cut to the column ``name``'s ``length``, logged."""
        self.truncations.report(self.log, name, length, value)
        return cutToColumn(value, length, self.dialect)


def _dateTimeVR(column):
    """``_Field.dateTime`` of a dicom.sql column."""
    if column.sqlType == "SQL_C_DATE":
        return "DA"
    return "TM" if column.dicomType == "DT_TIME" else None


def buildLevels(tables, layout, allowTruncate=frozenset(), dialect=None):
    """The four ``Level`` objects, patient first."""
    return [Level(name, getattr(tables, name), getattr(layout, name), allowTruncate, dialect)
            for name in LEVELS]


def checkKeys(levels, attrs):
    """Raise ``ValueError`` if ``attrs`` cannot key index rows: no study,
    series or SOP instance UID, or a key or link value longer than its
    column, holding a NUL or a character the database cannot hold (cut or
    changed, it would name another row)."""
    for level in levels[1:]:
        if not attrs.get(level.keyTag):
            raise ValueError(f"{level.table.name}: empty {level.keyName}")
    for level in levels:
        for field in level.keyFields:
            value = attrs.get(field.source, "")
            if storedLength(level.dialect, value) > field.length:
                raise ValueError(f"{level.table.name}.{field.name} {shown(value)} is longer than its "
                                 f"{field.length} characters")
            if "\0" in value:
                raise ValueError(f"{level.table.name}.{field.name} {shown(value)} holds a NUL")
            if not holds(level.dialect, value):
                raise ValueError(f"{level.table.name}.{field.name} {shown(value)} holds characters the "
                                 f"database's {encodingOf(level.dialect)} cannot hold")


def checkRecord(levels, record):
    """Raise ``ValueError`` if the record cannot be indexed at all: its
    keys unusable (``checkKeys``), or no usable file location."""
    checkKeys(levels, record.attrs)
    columns = levels[3].table.c
    for value, column in ((record.deviceName, columns.DeviceName),
                          (record.objectFile, columns.ObjectFile)):
        if not 0 < len(storedPath(value)) <= column.type.length:  # as held: not UTF-8, escaped
            raise ValueError(f"{column.name} {value!r} must have 1 to "
                             f"{column.type.length} characters")


class Upserter:
    """Writes ``ImageRecord``s by the rules above, for ONE thread.

    Keeps ``(level, key) -> (values last seen, values known in the row)``
    for patient, study and series rows: the images of one series then cost
    one SELECT of each parent's key per transaction (the rows may have gone
    since: deleted by hand, by another node sharing the database, a backup
    restored; on SQLite, only once another connection has committed since
    the last check: ``DATA_VERSION``), and a batch of new images one
    SELECT ... IN and one executemany INSERT.  The cache assumes that the
    rows' values change only through this object (but for the study's
    modalities, which other writers merge into too: see ``Level.write``):
    call ``forgetCache()`` after any rollback and after deleting or
    rewriting rows (deletes, merges, initialization).
    """

    log = Logger()
    maxCached = 10000

    def __init__(self, levels):
        self._levels = levels
        self._parents = levels[:3]
        self._image = levels[3]
        self._links = [level.table.c[level.fields[-1].name] for level in levels]  # [0] unused: patients link nowhere
        # the columns of the tables below each parent level that hold its key, its children's link first
        self._naming = [[level.table.c[field.name] for level in levels[index + 1:] for field in level.fields
                         if field.tag == parent.keyTag] for index, parent in enumerate(self._parents)]
        series, other = levels[2].key, self._image.key != bindparam("b_sop")
        # images of the series (2) or study (1) b_key other than the SOP instance b_sop
        self._otherImages = {
            2: select(self._image.key).where((self._links[3] == bindparam("b_key")) & other).limit(1),
            1: select(self._image.key).where(self._links[3].in_(select(series).where(
                self._links[2] == bindparam("b_key"))) & other).limit(1)}
        # the study of the series b_key and that study's patient
        self._seriesStudy = select(self._links[2], self._links[1]).select_from(levels[2].table.outerjoin(
            levels[1].table, self._links[2] == levels[1].key)).where(series == bindparam("b_key"))
        self._rebuildModalities = _modalitiesRebuild(levels[1], levels[2])
        self._modalitiesMissing = _modalitiesMissing(levels[1], levels[2])
        self._lastStored = {index: _lastStoredImage(levels, index) for index in (0, 1, 2)}
        self._cache = {}
        self._checkedAt = None  # (DBAPI connection, DATA_VERSION) of the last check of the cached rows

    def forgetCache(self):
        """Drop every cached row (safe from any thread)."""
        self._cache.clear()

    def upsertImages(self, connection, records, entered=False):
        """Write records inside the caller's transaction; with ``entered``
        (a regen runs), ``NotReentered`` for one whose study or series row
        is not there yet (nor cached).

        One result per record: ``Replaced`` of the previous file of its
        SOPInstanceUID, or None.  ``ValueError`` (before writing anything)
        if any record has no UIDs or file location; ``InconsistentLink``
        (a ValueError) if one would move a study, series or image row it may not,
        after some rows were written: the caller rolls the transaction back.
        """
        for record in records:
            checkRecord(self._levels, record)
        self._forgetVanished(connection, records)
        now = int(time.time())
        rows, left = [], set()  # left: (level index, key) of rows a child left
        batched = {}  # (level index, key) -> the SOP instances of this batch going under that study or series
        locations = self._locations(connection, [record.attrs.get(self._image.keyTag) for record in records])
        series = {key: location[2] for key, location in locations.items()}  # SOP instance -> its series so far
        for record in records:
            sopInstanceUID = record.attrs.get(self._image.keyTag)
            self._checkLink(connection, 3, sopInstanceUID, self._imageLink(series.get(sopInstanceUID)), record,
                            batched)
            series[sopInstanceUID] = record.attrs.get(self._image.fields[-1].source)
            for index, level in enumerate(self._parents):
                self._upsertParent(connection, index, level, record, now, left, batched, entered)
            for index in (1, 2):
                key = (index, record.attrs.get(self._parents[index].keyTag))
                batched.setdefault(key, set()).add(record.attrs.get(self._image.keyTag))
            rows.append({**self._image.values(record.attrs),
                         "DeviceName": record.deviceName, "ObjectFile": record.objectFile,
                         "AccessTime": now, "qTimeStamp": now})
        results = self._writeImages(connection, rows, left, locations)
        for index, key in sorted(left, reverse=True):  # series before studies before patients
            self._deleteIfEmpty(connection, index, key)
        return results

    def _upsertParent(self, connection, index, level, record, now, left, batched, entered):
        attrs = record.attrs
        seen = tuple(map(attrs.get, level.tags))
        cacheKey = (level.name, attrs.get(level.keyTag, ""))
        cached = self._cache.get(cacheKey)
        if cached is not None and cached[0] == seen:
            return
        values = level.values(attrs)
        key = values[level.keyName]
        known = cached[1] if cached is not None else level.row(connection, key)
        if entered and index and known is None:
            raise NotReentered(level.table.name, level.keyName, key)
        if index:
            self._checkLink(connection, index, key, known, record, batched)
        if known is not None:
            known, changes = level.write(connection, key, known, values)
        if known is None:
            level.insert.execute(connection, {**values, "AccessTime": now, "qTimeStamp": now})
            self._remember(cacheKey, seen, values)
            return
        link = self._links[index].name
        if index and link in changes and known[link]:
            left.add((index - 1, known[link]))
        self._remember(cacheKey, seen, {**known, **changes})

    def checkLinks(self, connection, record, entered=False):
        """``InconsistentLink`` if ``record`` would move a study, series or
        image row that it may not (see ``_checkLink``); with ``entered``,
        ``NotReentered`` if its study or series row is not there yet (see
        the rules above)."""
        sopInstanceUID = record.attrs.get(self._image.keyTag)
        location = self._locations(connection, [sopInstanceUID]).get(sopInstanceUID)
        self._checkLink(connection, 3, sopInstanceUID, self._imageLink(location and location[2]), record, {})
        for index in (1, 2):
            level = self._parents[index]
            key = record.attrs.get(level.keyTag)
            known = level.row(connection, key)
            if entered and known is None:
                raise NotReentered(level.table.name, level.keyName, key)
            self._checkLink(connection, index, key, known, record, {})

    def _imageLink(self, series):
        """The ``known`` row of ``_checkLink`` of an image indexed under
        ``series`` (None: not indexed): its link column alone."""
        return None if series is None else {self._links[3].name: series}

    def _checkLink(self, connection, index, key, known, record, batched):
        """``InconsistentLink`` if ``record`` links the study (``index`` 1),
        series (2) or image (3) row ``key``, ``known`` (None: there is
        none), to another patient, study or series than the row does
        (Conquest's UpdateOrAddToTable checks the link of every table but
        the patients'), unless the row may move: ``record.relink``, and the
        study or series row holds no image but the record's own SOP
        instance, the series an image row leaves none, in the database or
        earlier in this batch (``batched``): only the last image of a
        series moves, as it moves its series and study, or one a command
        rewrote (``record.rewritten``), and only to another series of its
        study and patient (``_withinItsStudy``).  A row's
        link that differs only by the spaces that pad it (indexed before
        they were dropped) is the same: the row takes the record's."""
        level, attrs = self._levels[index], record.attrs
        link, new = self._links[index].name, attrs.get(level.fields[-1].source)
        if known is None or not known[link] or not new or new == known[link].strip(" "):  # padded: written before
            return
        sopInstanceUID = attrs.get(self._image.keyTag)
        holder, holderKey = (index, key) if index < 3 else (2, known[link])  # the row that must hold no other image
        if (record.relink and (index < 3 or self._withinItsStudy(connection, holderKey, attrs)) and (
                index == 3 and record.rewritten or not batched.get((holder, holderKey), set()) - {sopInstanceUID}
                and connection.execute(self._otherImages[holder],
                                       {"b_key": holderKey, "b_sop": sopInstanceUID}).first() is None)):
            return
        raise InconsistentLink(level.table.name, level.keyName, key, link, known[link], new)

    def _withinItsStudy(self, connection, series, attrs):
        """Whether the series row ``series`` (the one an image row would
        leave) is of the study and patient that ``attrs`` names: an image
        moves to another series of its study only; one of another study or
        patient with its SOP Instance UID is an unrelated object (a
        colliding UID), not a corrected one, even where the image is alone
        in its series (a CR view, an SR, a PDF)."""
        row = connection.execute(self._seriesStudy, {"b_key": series}).first()
        return row is not None and [(value or "").strip(" ") for value in row] == [
            attrs.get(self._parents[1].keyTag, ""), attrs.get(self._parents[0].keyTag, "")]

    def _forgetVanished(self, connection, records):
        """Drop the cached parent rows of ``records`` that the database no
        longer holds, so that they are inserted again.  On SQLite none can
        have gone while no other connection has committed (SQLite tells);
        once one has, the other cached rows are dropped too, unchecked."""
        checkedAt = None
        if connection.dialect.name == "sqlite":
            checkedAt = (connection.connection.dbapi_connection, DATA_VERSION.execute(connection, {})[0][0])
            if checkedAt == self._checkedAt:
                return
        batch = {}  # level -> {key in the row: cache key} of the cached parents of records
        for level in self._parents:
            for record in records:
                cacheKey = (level.name, record.attrs.get(level.keyTag, ""))
                entry = self._cache.get(cacheKey)
                if entry is not None:
                    batch.setdefault(level, {})[entry[1][level.keyName]] = cacheKey
        if checkedAt is not None:
            kept = {cacheKey for cached in batch.values() for cacheKey in cached.values()}
            for cacheKey in self._cache.keys() - kept:
                self._cache.pop(cacheKey, None)
        for level, cached in batch.items():
            present = {key for key, in level.selectKeys.rows(connection, list(cached))}
            for key in cached.keys() - present:
                self.log.info("{table} row {key} is gone from the database (deleted outside this writer); "
                              "it is inserted again", table=level.table.name, key=key)
                del self._cache[cached[key]]
        self._checkedAt = checkedAt

    def _remember(self, cacheKey, seen, known):
        if len(self._cache) >= self.maxCached:
            self._cache.clear()
        self._cache[cacheKey] = (seen, known)

    def _writeImages(self, connection, rows, left, locations):
        """INSERT or UPDATE the image ``rows``, of the SOP instances indexed
        at ``locations`` (``_locations``) before this batch."""
        keyName, seriesName = self._image.keyName, self._links[3].name
        locations = dict(locations)
        inserts, updates, results = [], [], []
        for row in rows:
            key = row[keyName]
            location = (row["DeviceName"], row["ObjectFile"], row[seriesName])
            previous = locations.get(key)
            if previous is None:
                inserts.append(row)
            else:
                updates.append({**row, "b_key": key})
                if previous[2] != location[2]:
                    left.add((2, previous[2]))
            results.append(Replaced(*previous[:2]) if previous is not None and previous[:2] != location[:2]
                           else None)
            locations[key] = location
        if inserts:
            self._image.insert.execute(connection, inserts)
        for update in updates:  # after the inserts: a SOP twice in one batch
            self._image.update.execute(connection, update)
        return results

    def indexedAt(self, connection, files):
        """The ``(device, file)`` pairs of ``files`` an image row names (a
        scan of the image table for each ``SELECT_CHUNK`` of them: no index
        covers ObjectFile)."""
        columns, files = self._image.table.c, list(files)
        query = select(columns.DeviceName, columns.ObjectFile).where(
            columns.ObjectFile.in_(bindparam("b_files", expanding=True)))
        wanted, found = set(files), set()
        for start in range(0, len(files), SELECT_CHUNK):
            chunk = sorted({objectFile for deviceName, objectFile in files[start:start + SELECT_CHUNK]})
            found.update((deviceName, objectFile) for deviceName, objectFile in
                         connection.execute(query, {"b_files": chunk}) if (deviceName, objectFile) in wanted)
        return found

    def deleteImagesAt(self, connection, files):
        """Delete the image rows of ``files`` (``(device, file)`` pairs),
        then the series, study and patient rows left without an image."""
        columns, series = self._image.table.c, set()
        for deviceName, objectFile in files:
            where = (columns.DeviceName == deviceName) & (columns.ObjectFile == objectFile)
            series.update(connection.execute(select(self._links[3]).where(where)).scalars())
            connection.execute(self._image.table.delete().where(where))
        for key in sorted(key for key in series if key):
            self._deleteIfEmpty(connection, 2, key, "its last image was lost")

    def _deleteIfEmpty(self, connection, index, key, why="its last image moved elsewhere"):
        """Delete the row ``key`` of level ``index`` (2: series, 1: study,
        0: patient) when no row below links to it any more, then likewise
        the row above it."""
        for index in range(index, -1, -1):
            parent = self._levels[index]
            naming = next((column for column in self._naming[index] if connection.execute(
                select(column).where(column == key).limit(1)).first() is not None), None)
            if naming is not None:
                if naming is not self._naming[index][0]:
                    self.log.warn("{table} row {key} kept though {why}: {column} of {other} still names it",
                                  table=parent.table.name, key=key, why=why, column=naming.name,
                                  other=naming.table.name)
                if index == 1:  # a study that lost a series
                    self.rebuildModalities(connection, [key])
                break
            above = connection.execute(select(self._links[index]).where(parent.key == key)).scalar() if index else None
            connection.execute(parent.table.delete().where(parent.key == key))
            self.log.info("{table} row {key} deleted: {why}", table=parent.table.name, key=key, why=why)
            if not above:
                break
            key = above
        self.forgetCache()

    def rebuildModalities(self, connection, studyKeys):
        """Make the study modalities column of the studies ``studyKeys``
        again of the Modality of their series (one UPDATE a study; nothing
        when dicom.sql has no such column)."""
        if self._rebuildModalities is None:
            return
        for key in studyKeys:
            connection.execute(self._rebuildModalities, {"b_key": key})

    def fillModalities(self, connection):
        """Make the study modalities column of the studies whose column is
        empty while a series of theirs has a Modality (as pacs releases
        before it was written left them) of their series'
        (``rebuildModalities``); the keys of those studies.  A series keeps
        the Modality of its last object: the other modalities of its
        objects, which ``dgate -r`` merges, are not there."""
        if self._modalitiesMissing is None:
            return []
        keys = connection.execute(self._modalitiesMissing).scalars().all()
        self.rebuildModalities(connection, keys)
        return keys

    def refreshParents(self, connection, keys, recordOf):
        """Give the patient (0), study (1) and series (2) rows ``keys``,
        ``(level index, key)`` pairs, that still hold images the values of
        the one of those stored last, as if it were stored again (its non-empty
        values; the study modalities aside, ``rebuildModalities``):
        ``recordOf(DeviceName, ObjectFile)`` gives its ``ImageRecord``, or
        None (it does not read: the row is left), once for all the rows
        whose object stored last it is.  Patients first: the one a patient
        stored last is also its study's and series' (not looked for again),
        and so a study's its series'."""
        records, newest = {}, {}  # location -> ImageRecord or None; (level index, key) -> location found above
        for index, key in sorted(keys, key=lambda pair: pair[0]):
            level = self._levels[index]
            location = newest.get((index, key))
            if location is None:
                row = connection.execute(self._lastStored[index], {"b_key": key}).first()
                if row is None:
                    continue
                deviceName, objectFile, series, study = row
                location = (deviceName, objectFile)
                newest.update({(lower, under): location for lower, under in ((1, study), (2, series)) if lower > index})
            known = level.row(connection, key)
            if known is None:
                continue
            if location not in records:
                records[location] = recordOf(*location)
            record = records[location]
            if record is None:
                continue
            skipped = {level.modalities.name} if level.modalities is not None else set()
            changes = {name: value for name, value in level.values(record.attrs).items()
                       if value and value != known[name] and name not in skipped}
            if changes:
                level.update.execute(connection, {**changes, "b_key": key})

    def indexedFiles(self, connection, keys):
        """SOPInstanceUID -> ``Replaced(DeviceName, ObjectFile)`` of those of ``keys`` (a list) indexed."""
        return {key: Replaced(*location[:2]) for key, location in self._locations(connection, keys).items()}

    def _locations(self, connection, keys):
        """SOPInstanceUID -> (DeviceName, ObjectFile, SeriesInstanceUID) of the rows that exist."""
        return {key: tuple(rest) for key, *rest in self._image.selectLocations.rows(connection, keys)}


def _lastStoredImage(levels, index):
    """The SELECT of the DeviceName, ObjectFile, series and study of the
    image under the patient (``index`` 0), study (1) or series (2) ``b_key``
    stored last: of the newest qTimeStamp, then (of one second) the greatest
    ObjectFile, found through the links' indexes in one pass over the
    level's images."""
    tables = [level.table for level in levels]

    def link(lower):
        return tables[lower].c[levels[lower].fields[-1].name]
    image, source, lower = tables[3], tables[3].join(tables[2], link(3) == levels[2].key), 2
    while lower > index + 1:
        source = source.join(tables[lower - 1], link(lower) == levels[lower - 1].key)
        lower -= 1
    return (select(image.c.DeviceName, image.c.ObjectFile, link(3), link(2)).select_from(source)
            .where(link(index + 1) == bindparam("b_key"), image.c.qTimeStamp.isnot(None))
            .order_by(image.c.qTimeStamp.desc(), image.c.ObjectFile.desc(), image.c.DeviceName.desc()).limit(1))


def _seriesModality(study, series):
    """``(Modality column, study link column)`` of the ``series`` table, or
    None when dicom.sql has not both it and ``study``'s modalities column
    (``Level``s)."""
    modality = next((field for field in series.fields if field.tag == MODALITY), None)
    if study.modalities is None or modality is None:
        return None
    return series.table.c[modality.name], series.table.c[series.fields[-1].name]


def _modalitiesMissing(study, series):
    """The SELECT of the keys of the studies whose modalities column is
    empty while a series of theirs has a Modality; None when dicom.sql
    has not both (``_seriesModality``)."""
    columns = _seriesModality(study, series)
    if columns is None:
        return None
    column, link = columns
    empty = study.table.c[study.modalities.name]
    return select(study.key).where(or_(empty.is_(None), empty == ""),
                                   exists(select(link).where(link == study.key, column != "")))


def _modalitiesRebuild(study, series):
    """The UPDATE (of ``b_key``, a study) making ``study``'s modalities
    column of its ``series``' Modality column, backslash-separated, cut to
    the column's length (``Level``s); None when dicom.sql has not both."""
    columns = _seriesModality(study, series)
    if columns is None:
        return None
    column, link = columns
    listed = select(distinctValues(column)).where(link == bindparam("b_key"), column != "").scalar_subquery()
    value = func.substr(func.replace(func.coalesce(listed, ""), ",", "\\"), 1, study.modalities.length)
    return study.table.update().where(study.key == bindparam("b_key")).values(
        {study.modalities.name: value})
