"""Modality Worklist C-FIND keys as SQL on the worklist table (PS3.4 K.6.1).

``WorklistQuery.find`` answers with one SELECT on the dicom.sql *WorkList*
table, every request value a bound parameter.  Keys map to columns by TAG:
the keys of the identifier's top level and those of its Scheduled Procedure
Step Sequence item come flattened, as the table holds one scheduled
procedure step per row (its sequence markers are descriptive only).

Each key matches as in the Q/R C-FIND (``pacscore.db.query.matchCondition``:
wildcards, DA/TM ranges, UID lists, case-insensitive person names and
``DT_ISTR`` columns, several values).  Scheduled Procedure Step Start Date (0040,0002) and Start Time
(0040,0003) match independently of each other: combined date-time matching
needs the extended negotiation of PS3.4 C.2.2.2.5, which is not offered.
Keys whose tag has no column impose no condition: ``unmatchedKeys`` names
those with values (Private Creators aside), so that the matches are answered 0xFF01.
"""

from sqlalchemy import select

from pacscore.db.query import asksForMatch, matchCondition
from pacscore.db.sqlfunctions import byteOrder

__all__ = ["WorklistQuery"]

START_DATE = 0x00400002
START_TIME = 0x00400003
ACCESSION_NUMBER = 0x00080050


class WorklistQuery:
    """C-FIND queries on the worklist table.

    ``table`` is the SQLAlchemy worklist table, ``columns`` the dicom.sql
    *WorkList* columns (sequence markers included); when a tag has several
    columns the first one is matched and returned.
    """

    def __init__(self, table, columns):
        self.table = table
        self.byTag = {}  # tag -> (SQLAlchemy column, dicom.sql Column)
        for column in columns:
            if not column.isSequenceMarker:
                self.byTag.setdefault(column.tag, (table.c[column.name], column))
        self.orderBy = [byteOrder(self.byTag[tag][0]) for tag in (START_DATE, START_TIME, ACCESSION_NUMBER)
                        if tag in self.byTag]

    def find(self, connection, keys):
        """One ``{tag: text}`` per matching row, every column by its tag,
        by scheduled start date, start time and accession number, by code
        point (``byteOrder``) (none when
        dicom.sql has no *WorkList* table, as before Conquest 1.4.9)."""
        if not self.byTag:
            return []
        tags = list(self.byTag)
        query = (select(*(self.byTag[tag][0].label(f"k{n}") for n, tag in enumerate(tags)))
                 .where(*self.conditions(connection, keys))
                 .order_by(*self.orderBy))
        return [dict(zip(tags, ("" if value is None else value for value in row)))
                for row in connection.execute(query)]

    def conditions(self, connection, keys):
        """The SQL conditions of the ``keys`` that a column matches."""
        prefixRange = connection.dialect.name == "sqlite"
        conditions = []
        for key in keys:
            found = self.byTag.get(key.tag)
            if found is None:
                continue
            column, layout = found
            condition = matchCondition(column, key, layout.dicomType == "DT_MSTR", prefixRange,
                                       foldCase=layout.foldsCase)
            if condition is not None:
                conditions.append(condition)
        return conditions

    def unmatchedKeys(self, keys):
        """The tags of ``keys`` with values to match that no column matches:
        no column has their tag (a sequence key has none); not Private
        Creators, which ask for no match (``asksForMatch``)."""
        return [key.tag for key in keys if key.tag not in self.byTag and asksForMatch(key)]
