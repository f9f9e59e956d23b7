"""Person names as the index matches them: without what PS3.5 6.2 lets a
PN value leave out, the trailing empty components of each component group
(``Doe^John^^^``) and the trailing empty groups (``Doe^John=``), so that a
key and a stored name match whether they spell them or not; in Python for
a key, in SQL for a stored name (SQLite, PostgreSQL and MySQL alike).
"""

from sqlalchemy import Integer, String, func
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

# A component group holds at most five components: at most four "^" end one.
MAX_TRAILING_CARETS = 4
# What a spelling of a name may hold beyond its personName: the "^"s ending its three groups, two "="s.
CUT_SLACK = 3 * MAX_TRAILING_CARETS + 2


def personName(value):
    """A PN value without the trailing empty components of each component
    group and without trailing empty groups: ``Doe^John^^^=`` is ``Doe^John``."""
    groups = [group.rstrip("^") for group in value.split("=")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def storedPersonName(column):
    """``personName`` of the PN text ``column`` in SQL: each "^" before a
    "=" dropped (as many times as a group may end with one), then the
    trailing "^"s and "="s."""
    for _ in range(MAX_TRAILING_CARETS):
        column = func.replace(column, "^=", "=")
    return trimTrailing(trimTrailing(column, "^"), "=")


class trimTrailing(FunctionElement):
    """SQL ``text`` without the ``character``s it ends with: ``rtrim(text,
    character)``, on MySQL ``TRIM(TRAILING character FROM text)``."""

    type = String()
    inherit_cache = True


@compiles(trimTrailing)
def _rtrim(element, compiler, **kw):
    return f"rtrim({compiler.process(element.clauses, **kw)})"


@compiles(trimTrailing, "mysql")
def _trimTrailingFrom(element, compiler, **kw):
    text, character = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"TRIM(TRAILING {character} FROM {text})"


class textLength(FunctionElement):
    """The length of SQL ``text`` in characters: ``length(text)``, on MySQL
    (whose ``length`` counts bytes) ``CHAR_LENGTH(text)``."""

    type = Integer()
    inherit_cache = True


@compiles(textLength)
def _length(element, compiler, **kw):
    return f"length({compiler.process(element.clauses, **kw)})"


@compiles(textLength, "mysql")
def _charLength(element, compiler, **kw):
    return f"CHAR_LENGTH({compiler.process(element.clauses, **kw)})"
