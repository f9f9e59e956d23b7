"""``query`` and ``query2`` (manual appendix 6, "Database options"): an
operator's SELECT on one of the index tables.

``query:table|fields|where|fmt|file`` runs ``SELECT fields FROM table
[WHERE where]`` in a reader thread (``Index.runQuery``) and formats each
row with ``fmt`` (tab-separated without one), to ``file`` or the output;
``query2`` has a ``max`` row limit before ``file``.  Only the index tables
are allowed, and no ``;``: one SELECT, nothing else.  The text is the
operator's own SQL (the control port is the operator's console), sent to
the driver as written but for the names of the index's tables and columns,
which are quoted as the database stores them (``pacscore.db.rawsql``).
"""

from sqlalchemy.exc import SQLAlchemyError

from pacscore.control.arguments import ControlCommand, number
from pacscore.control.context import CommandError
from pacscore.control.output import deliver, formatRow, pipeFields

MAX_ROWS = 2**31 - 1  # the largest fetchmany() takes


def _select(connection, statement, limit):
    """In a reader thread: the rows, at most ``limit`` (None: all)."""
    if connection.dialect.paramstyle in ("format", "pyformat"):
        statement = statement.replace("%", "%%")  # no parameters: each % is the operator's (LIKE 'A%')
    result = connection.exec_driver_sql(statement)
    rows = result.fetchmany(limit) if limit is not None else result.all()
    return [["" if value is None else value for value in row] for row in rows]


class Query(ControlCommand):
    name = "query"
    usage = "--query:table|fields|where|fmt|file  Arbitrary query output to file"

    def run(self, arguments, context):
        table, columns, where, fmt, path = pipeFields(arguments, 5)
        return self.select(context.archive, table, columns, where, fmt, None, path)

    def select(self, archive, table, columns, where, fmt, limit, path):
        names = {t.name.lower(): t.name for t in archive.index.tables}
        name = names.get(table.strip().lower())
        if name is None:
            raise CommandError(f"table {table.strip()!r} is not an index table ({', '.join(names.values())})")
        if not columns.strip():
            raise CommandError("no fields given")
        statement = f"SELECT {columns.strip()} FROM {name}"
        if where.strip():
            statement += f" WHERE {where.strip()}"
        if ";" in statement:
            raise CommandError("';' is not allowed in a query")
        d = archive.index.runQuery(_select, archive.index.quoteNames(statement), limit)
        d.addErrback(_failed, statement)
        return d.addCallback(lambda rows: deliver(archive, [formatRow(fmt, row) for row in rows], path))


class Query2(Query):
    name = "query2"
    usage = "--query2:tab|fld|whe|fmt|max|file  Same but limit output rows to max"

    def run(self, arguments, context):
        table, columns, where, fmt, limit, path = pipeFields(arguments, 6)
        limit = number(limit, "max")
        if limit > MAX_ROWS:
            raise CommandError(f"max must be at most {MAX_ROWS}, not {limit}")
        return self.select(context.archive, table, columns, where, fmt, limit, path)


def _failed(failure, statement):
    failure.trap(SQLAlchemyError)
    error = failure.value
    raise CommandError(f"{statement}: {getattr(error, 'orig', None) or error}")

