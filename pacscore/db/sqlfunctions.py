"""SQL functions each database spells its own way, made by
``dialectFunction`` from one template per dialect: ``distinctValues(column)``,
the distinct values of a column over the rows of a query joined by ``,``
(SQLite's and MySQL's ``group_concat(DISTINCT ...)``, PostgreSQL's
``string_agg(DISTINCT ..., ',')``; NULL over no rows), ``trimTrailing(text,
character)``, SQL ``text`` without the ``character``s it ends with
(``rtrim``, on MySQL ``TRIM(TRAILING ... FROM ...)``), ``textLength(text)``,
its length in characters (``length``, on MySQL, whose ``length`` counts
bytes, ``CHAR_LENGTH``), and ``numericValue(text)``, the number a text
column holds, to sort by: SQLite's ``CAST ... AS REAL``, the number its
text starts with (``12abc``: 12), 0 for text that starts with none and for
NULL; so MySQL's ``+ 0.0``, and PostgreSQL's ``NUMERIC`` of the number the
text starts with, an exponent of at most 3 digits (its ``CAST`` fails on
other text, ``DOUBLE PRECISION``'s on ``1e999`` too; ``1e1000`` is 1
there, infinite on SQLite).  ``numberIn(text)`` is the same number in
Python (the order of answers merged with those of virtual servers).
``byteOrder(text)`` sorts by code point (byte order of UTF-8) as SQLite
and MySQL's ``utf8mb4_bin`` tables do: on a PostgreSQL database made with
another collation (``en_US.UTF-8`` puts ``aaa`` before ``AAA`` before
``BS1``) ``COLLATE "C"``, which its indexes cannot give the order of; on
one whose collation sorts so already (``C``, ``POSIX``, ``C.UTF-8``: the
driver says so, ``setSortsByCodePoint``) the text as it is, whose index
gives a page of a query over a whole table without sorting it."""

import re

from sqlalchemy import Float, Integer, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


def dialectFunction(name, returns, default, **dialects):
    """A SQL function element class ``name`` of type ``returns``, written
    as the template ``default`` (or that of its dialect in ``dialects``):
    ``{args}`` stands for its arguments as SQL, ``{0}``, ``{1}``... for
    each."""
    function = type(name, (FunctionElement,), {"type": returns, "inherit_cache": True})
    for dialect, template in ((None, default), *dialects.items()):
        def written(element, compiler, template=template, **kw):
            args = [compiler.process(clause, **kw) for clause in element.clauses]
            return template.format(*args, args=", ".join(args))
        compiles(function, *(dialect,) if dialect else ())(written)
    return function


distinctValues = dialectFunction("distinctValues", String(), "group_concat(DISTINCT {args})",
                                 postgresql="string_agg(DISTINCT {args}, ',')")
trimTrailing = dialectFunction("trimTrailing", String(), "rtrim({args})", mysql="TRIM(TRAILING {1} FROM {0})")
textLength = dialectFunction("textLength", Integer(), "length({args})", mysql="CHAR_LENGTH({args})")
_SORTS_BY_CODE_POINT = "pacsSortsByCodePoint"


def setSortsByCodePoint(dialect):
    """Record that the PostgreSQL database of ``dialect`` sorts text by code point."""
    setattr(dialect, _SORTS_BY_CODE_POINT, True)


byteOrder = dialectFunction("byteOrder", String(), "{0}")


@compiles(byteOrder, "postgresql")
def _collatedByteOrder(element, compiler, **kw):
    text = compiler.process(element.clauses, **kw)
    return text if getattr(compiler.dialect, _SORTS_BY_CODE_POINT, False) else f'{text} COLLATE "C"'


numericValue = dialectFunction(
    "numericValue", Float(), "COALESCE(CAST({0} AS REAL), 0.0)", mysql="COALESCE({0} + 0.0, 0.0)",
    postgresql="COALESCE(CAST(substring({0} from '^[[:space:]]*([-+]?(?:[0-9]+[.]?[0-9]*|[.][0-9]+)"
               "(?:[eE][-+]?[0-9]{{1,3}}(?![0-9]))?)') AS NUMERIC), 0)")
_LEADING_NUMBER = re.compile(r"[ \t\n\v\f\r]*([-+]?(?:[0-9]+[.]?[0-9]*|[.][0-9]+)(?:[eE][-+]?[0-9]+)?)")


def numberIn(text):
    """The number ``numericValue`` gives for ``text`` (None too), as SQLite's
    CAST: the number it starts with (infinite when too large), else 0."""
    match = _LEADING_NUMBER.match(text or "")
    return float(match.group(1)) if match else 0.0
