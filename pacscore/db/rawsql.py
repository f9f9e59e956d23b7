"""SQL text written by an operator (``dgate --query``, an export
converter's SQL filter), made to name the index's tables and columns the
way the database stores them.

Conquest's users write ``SELECT PatientID FROM DICOMPatients WHERE
Modality = 'CT'``: unquoted, in any case.  The index creates its tables with
dicom.sql's names, quoted where they have capitals; SQLite matches any case
anyway, but PostgreSQL folds an unquoted name to lower case and would not
find ``"DICOMPatients"``.  So each unquoted word of the text that is, in any
case, the name of one of the index's tables or columns is written as the
dialect quotes that name; string literals, quoted names and everything else
stay as written.  As Conquest's filters may (its dicom.ini's
``TruncateFieldNames``: ``ImageNumbe``, ``StudyInsta``), a column may be
named cut to that many characters, when only one column's name starts so.
"""

import re

_TOKENS = re.compile(r"""'(?:[^']|'')*'?|"(?:[^"]|"")*"?|[A-Za-z_][A-Za-z0-9_$]*|.""", re.DOTALL)


DEFAULT_TRUNCATE = 10  # Conquest's TruncateFieldNames in the shipped dicom.ini


class IdentifierQuoter:
    """Quotes the names of ``tables`` (SQLAlchemy ``Table``s) and their
    columns in SQL text for ``dialect``; a column's name may be cut to
    ``truncate`` characters (0: not)."""

    def __init__(self, tables, dialect, truncate=DEFAULT_TRUNCATE):
        stored = {}  # lower-case name -> the name as stored
        for table in tables:
            stored[table.name.lower()] = table.name
            for column in table.columns:
                stored.setdefault(column.name.lower(), column.name)
        columns = {column.name for table in tables for column in table.columns}
        cut = {}  # lower-case short name -> the names cut to it
        for name in columns:
            if truncate > 0 and len(name) > truncate:
                cut.setdefault(name[:truncate].lower(), set()).add(name)
        for short, names in cut.items():
            if len(names) == 1 and short not in stored:
                stored[short] = names.pop()
        self._stored = stored
        preparer = dialect.identifier_preparer
        self._names = {name: preparer.quote(value) for name, value in stored.items()}

    def storedName(self, name):
        """The table or column ``name`` (in any case, maybe cut short) as
        stored; ``name`` itself when it names none."""
        return self._stored.get(name.lower(), name)

    def __call__(self, sql):
        return "".join(self._names.get(token.lower(), token) if token[0].isalpha() or token[0] == "_" else token
                       for token in _TOKENS.findall(sql))
