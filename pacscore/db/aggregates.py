"""``distinctValues(column)``: the distinct values of a column over the
rows of a query joined by ``,``, as the one aggregate each database has for
it (SQLite's and MySQL's ``group_concat(DISTINCT ...)``, PostgreSQL's
``string_agg(DISTINCT ..., ',')``); NULL over no rows."""

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class distinctValues(FunctionElement):
    type = String()
    name = "distinct_values"
    inherit_cache = True


@compiles(distinctValues)
def _groupConcat(element, compiler, **kw):
    return f"group_concat(DISTINCT {compiler.process(element.clauses, **kw)})"


@compiles(distinctValues, "postgresql")
def _stringAgg(element, compiler, **kw):
    return f"string_agg(DISTINCT {compiler.process(element.clauses, **kw)}, ',')"
