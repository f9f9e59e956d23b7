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
stay as written.
"""

import re

_TOKENS = re.compile(r"""'(?:[^']|'')*'?|"(?:[^"]|"")*"?|[A-Za-z_][A-Za-z0-9_$]*|.""", re.DOTALL)


class IdentifierQuoter:
    """Quotes the names of ``tables`` (SQLAlchemy ``Table``s) and their
    columns in SQL text for ``dialect``."""

    def __init__(self, tables, dialect):
        preparer = dialect.identifier_preparer
        names = {}
        for table in tables:
            names[table.name.lower()] = preparer.quote(table.name)
            for column in table.columns:
                names.setdefault(column.name.lower(), preparer.quote(column.name))
        self._names = names

    def __call__(self, sql):
        return "".join(self._names.get(token.lower(), token) if token[0].isalpha() or token[0] == "_" else token
                       for token in _TOKENS.findall(sql))
