"""Core statements the index writer runs for every stored object, compiled
once and executed straight on the DBAPI cursor of the writer's connection.

For the few small statements of one image (look up its SOP Instance UID,
insert its row, mark it pending) SQLAlchemy's execute path - cache key,
execution context, result set-up - costs several times what the database
takes to run them, and the writer thread is where an ingest waits.  A
statement goes direct only where that changes nothing: the types' processors
of its bound values and of the columns it selects (an ``ObjectFile``'s
``ObjectPath``) are applied here as SQLAlchemy would, it has no Python-side
column defaults and no IN list to expand, and no event listener wants to see
the engine's statements; any other statement, or key set, takes
``Connection.execute`` as before.  Either way it runs in the caller's
transaction, and a database error is raised as SQLAlchemy's ``DBAPIError``.
"""

from sqlalchemy import bindparam
from sqlalchemy.exc import DBAPIError

_INDIRECT = object()


class DirectStatement:
    """``statement`` (a Core insert/select/update/delete) run by ``execute``."""

    def __init__(self, statement):
        self.statement = statement
        self._plans = {}  # (dialect name, parameter keys) -> (sql, keys in order, named) or _INDIRECT

    def execute(self, connection, parameters):
        """Run with ``parameters`` (a dict, or a non-empty list of dicts with
        the same keys: executemany); the rows of a select, as tuples, else
        the DBAPI's ``rowcount`` (of an UPDATE or DELETE: the rows it
        matched)."""
        many = isinstance(parameters, list)
        first = parameters[0] if many else parameters
        keys = tuple(first)
        plan = self._plans.get((connection.dialect.name, keys))
        if plan is None:
            plan = self._plans[(connection.dialect.name, keys)] = self._plan(connection.dialect, keys)
        if plan is _INDIRECT or connection._has_events or connection.engine._has_events:
            result = connection.execute(self.statement, parameters)
            return result.all() if result.returns_rows else result.rowcount
        sql, order, named, binders, results = plan
        bound = [_processed(row, order, binders) for row in (parameters if many else [first])]
        values = [dict(zip(order, row)) for row in bound] if named else bound
        cursor = connection.connection.cursor()
        try:
            if many:
                cursor.executemany(sql, values)
            else:
                cursor.execute(sql, values[0])
            return [_processed(row, range(len(row)), results) for row in cursor.fetchall()] if cursor.description \
                else cursor.rowcount
        except connection.dialect.loaded_dbapi.Error as error:
            raise DBAPIError.instance(sql, values, error, connection.dialect.loaded_dbapi.Error,
                                      dialect=connection.dialect) from error
        finally:
            cursor.close()

    def _plan(self, dialect, keys):
        compiled = self.statement.compile(dialect=dialect, column_keys=list(keys))
        order = compiled.positiontup if compiled.positional else list(compiled.binds)
        if (compiled.insert_prefetch or compiled.update_prefetch or compiled.escaped_bind_names
                or any(bind.expanding for bind in compiled.binds.values()) or not set(order) <= set(keys)):
            return _INDIRECT
        binders = [compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order]
        results = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                   for column in getattr(self.statement, "selected_columns", ())]
        return str(compiled), tuple(order), not compiled.positional, binders, results


def _processed(row, keys, processors):
    """The values of ``row`` at ``keys``, each through its processor (if any)."""
    return tuple(value if process is None else process(value)
                 for value, process in zip((row[key] for key in keys), processors))


class DirectKeyList:
    """The rows of ``statement`` (a Core select; or a delete, ``execute``)
    whose ``column`` holds one of a list of keys, in statements of ``chunk``
    keys at most: for each number of keys a ``DirectStatement`` of ``column
    = ?`` or ``column IN (?, ?, ...)``, made at its first use (an expanding
    IN would take SQLAlchemy's execute path, several times what a few keys'
    statement costs)."""

    def __init__(self, statement, column, chunk):
        self.statement = statement
        self.column = column
        self.chunk = chunk
        self._bySize = {}  # number of keys -> (DirectStatement, the names of its parameters)

    def rows(self, connection, keys):
        """The rows (tuples) of ``keys`` (a list)."""
        rows = []
        for result in self._results(connection, keys):
            rows += result
        return rows

    def execute(self, connection, keys):
        """Run the statement (a delete) for ``keys`` (a list); how many rows it matched."""
        return sum(self._results(connection, keys))

    def _results(self, connection, keys):
        """What the statement of each chunk of ``keys`` gives (``DirectStatement.execute``)."""
        for start in range(0, len(keys), self.chunk):
            part = keys[start:start + self.chunk]
            entry = self._bySize.get(len(part))
            if entry is None:
                names = [f"b_key{number}" for number in range(len(part))]
                where = (self.column == bindparam(names[0]) if len(names) == 1
                         else self.column.in_([bindparam(name) for name in names]))
                entry = self._bySize[len(part)] = (DirectStatement(self.statement.where(where)), names)
            statement, names = entry
            yield statement.execute(connection, dict(zip(names, part)))
