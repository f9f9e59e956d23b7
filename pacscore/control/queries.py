"""``query``, ``query2``, ``addrecord`` and ``deleterecord`` (manual
appendix 6, "Database options"): an operator's SQL on one of the index
tables.

``query:table|fields|where|fmt|file`` runs ``SELECT fields FROM table
[WHERE where]`` in a reader thread (``Index.runQuery``) and formats each
row with ``fmt`` (tab-separated without one), to ``file`` or the output;
``query2`` has a ``max`` row limit before ``file``.  Only the index tables
are allowed, and no ``;``: one SELECT, nothing else.  The text is the
operator's own SQL (the control port is the operator's console), sent to
the driver as written but for the names of the index's tables and columns,
which are quoted as the database stores them (``pacscore.db.rawsql``).

``addrecord:table|fields|values`` inserts one row (``INSERT INTO table
(fields) VALUES (values)``, the values quoted as SQL literals: 'text'),
``deleterecord:table,where`` deletes the rows ``where`` selects (a where is
required: ``1=1`` for all).  Both run in the index writer, in order with
stores, and make it re-read the rows it caches.  Deleting image rows leaves
their files: ``dgate -r`` would index them again.
"""

from sqlalchemy.exc import SQLAlchemyError

from pacscore.control.arguments import ControlCommand, number
from pacscore.control.context import CommandError
from pacscore.control.output import deliverRows, pipeFields

MAX_ROWS = 2**31 - 1  # the largest fetchmany() takes


def _execute(connection, statement):
    """Run the operator's ``statement`` as written."""
    if connection.dialect.paramstyle in ("format", "pyformat"):
        statement = statement.replace("%", "%%")  # no parameters: each % is the operator's (LIKE 'A%')
    return connection.exec_driver_sql(statement)


def _select(connection, statement, limit):
    """In a reader thread: the rows, at most ``limit`` (None or 0: all)."""
    result = _execute(connection, statement)
    rows = result.fetchmany(limit) if limit else result.all()
    return [["" if value is None else value for value in row] for row in rows]


def tableName(archive, table):
    """The index table ``table`` names (any case); CommandError for another."""
    names = {t.name.lower(): t.name for t in archive.index.tables}
    name = names.get(table.strip().lower())
    if name is None:
        raise CommandError(f"table {table.strip()!r} is not an index table ({', '.join(names.values())})")
    return name


def statementOf(archive, statement):
    """``statement`` checked (one statement: no ';') and with the index's
    names quoted."""
    if ";" in statement:
        raise CommandError("';' is not allowed here: one statement only")
    return archive.index.quoteNames(statement)


class Query(ControlCommand):
    name = "query"
    usage = "--query:table|fields|where|fmt|file  Arbitrary query output to file"
    readOnly = True

    def run(self, arguments, context):
        table, columns, where, fmt, path = pipeFields(arguments, 5)
        return self.select(context, table, columns, where, fmt, None, path)

    def select(self, context, table, columns, where, fmt, limit, path):
        archive = context.archive
        name = tableName(archive, table)
        if not columns.strip():
            raise CommandError("no fields given")
        statement = f"SELECT {columns.strip()} FROM {name}"
        if where.strip():
            statement += f" WHERE {where.strip()}"
        d = archive.index.runQuery(_select, statementOf(archive, statement), limit)
        d.addErrback(_failed, statement)
        return d.addCallback(lambda rows: deliverRows(context, fmt, rows, path))


class Query2(Query):
    name = "query2"
    usage = "--query2:tab|fld|whe|fmt|max|file  Same but limit output rows to max"

    def run(self, arguments, context):
        """An empty or 0 ``max`` limits nothing (the manual's own sample.cq
        leaves it out)."""
        table, columns, where, fmt, limit, path = pipeFields(arguments, 6)
        limit = number(limit, "max") if limit.strip() else 0
        if limit > MAX_ROWS:
            raise CommandError(f"max must be at most {MAX_ROWS}, not {limit}")
        return self.select(context, table, columns, where, fmt, limit, path)


def _change(connection, statement, index):
    """In the index writer: run ``statement``; how many rows it changed."""
    count = _execute(connection, statement).rowcount
    index.forgetCache()
    return count


def writeStatement(index, statement, shown):
    """A Deferred of how many rows ``statement`` (its names quoted) changed,
    run by ``index``'s writer in order with stores; CommandError with the
    database's reason, which names the statement as ``shown``."""
    return index.runWrite(_change, statement, index).addErrback(_failed, shown)


class _Change(ControlCommand):
    """A statement changing an index table, run by the index writer."""

    def change(self, archive, statement):
        d = writeStatement(archive.index, statementOf(archive, statement), statement)
        return d.addCallback(lambda count: f"{count} record(s) {self.done}")


class AddRecord(_Change):
    name = "addrecord"
    usage = "--addrecord:table|flds|values  Append record, values must be in ''"
    done = "added"

    def run(self, arguments, context):
        table, columns, values = pipeFields(arguments, 3)
        if not columns.strip() or not values.strip():
            raise CommandError("addrecord needs fields and values: table|field,field|'value','value'")
        statement = f"INSERT INTO {tableName(context.archive, table)} ({columns.strip()}) VALUES ({values.strip()})"
        return self.change(context.archive, statement)


class DeleteRecord(_Change):
    name = "deleterecord"
    usage = "--deleterecord:table,where  Delete record from table (where 1=1: all)"
    done = "deleted"

    def run(self, arguments, context):
        table, _, where = arguments.partition(",")
        if not where.strip():
            raise CommandError("deleterecord needs a where: table,where (1=1 deletes every record)")
        return self.change(context.archive, f"DELETE FROM {tableName(context.archive, table)} WHERE {where.strip()}")


def _failed(failure, statement):
    failure.trap(SQLAlchemyError)
    error = failure.value
    raise CommandError(f"{statement}: {getattr(error, 'orig', None) or error}")

