"""DirectStatement: the writer's per-image statements run on the DBAPI
cursor, in the caller's transaction, with SQLAlchemy's execute path only
where the direct one would change what happens."""

from unittest import mock

from sqlalchemy import (Column, DateTime, Integer, MetaData, String, Table, bindparam, delete, event, insert,
                        select, update)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from twisted.trial import unittest

from pacscore.db.direct import DirectKeyList, DirectStatement
from tests.pacscore.db.test_writer import sqliteEngine


class DirectStatementTests(unittest.TestCase):

    def makeEngine(self):
        return sqliteEngine(self)

    def setUp(self):
        self.engine = self.makeEngine()
        metadata = MetaData()
        self.table = Table("Things", metadata, Column("Key", String(16), primary_key=True),
                           Column("Name", String(16)), Column("Count", Integer),
                           Column("Seen", DateTime), Column("Kind", String(8), default="plain"))
        metadata.create_all(self.engine)
        self.byKey = DirectStatement(select(self.table.c.Key, self.table.c.Name, self.table.c.Count)
                                     .where(self.table.c.Key == bindparam("b_key")))

    def rows(self):
        with self.engine.connect() as connection:
            return sorted(tuple(row) for row in connection.execute(
                select(self.table.c.Key, self.table.c.Name, self.table.c.Count, self.table.c.Kind)))

    def direct(self):
        """Fail the test should anything go through Connection.execute."""
        return mock.patch.object(Connection, "execute", side_effect=AssertionError("not direct"))

    def test_insertAndSelectDirectly(self):
        insertThing = DirectStatement(insert(self.table))
        with self.engine.begin() as connection, self.direct():
            insertThing.execute(connection, {"Key": "a", "Name": "A", "Count": 1, "Kind": "plain"})
            insertThing.execute(connection, [{"Key": "b", "Name": "B", "Count": 2, "Kind": "plain"},
                                             {"Key": "c", "Name": None, "Count": 3, "Kind": "plain"}])
            self.assertEqual(self.byKey.execute(connection, {"b_key": "b"}), [("b", "B", 2)])
            self.assertEqual(self.byKey.execute(connection, {"b_key": "zz"}), [])
        self.assertEqual(self.rows(), [("a", "A", 1, "plain"), ("b", "B", 2, "plain"), ("c", None, 3, "plain")])

    def test_updateDirectly(self):
        """An UPDATE gives the number of rows it matched, directly and (with
        a listener on the engine) through SQLAlchemy."""
        with self.engine.begin() as connection:
            connection.execute(insert(self.table), {"Key": "a", "Name": "A", "Count": 1})
        rename = DirectStatement(update(self.table).where(self.table.c.Key == bindparam("b_key")))
        with self.engine.begin() as connection, self.direct():
            self.assertEqual(rename.execute(connection, {"Name": "B", "b_key": "a"}), 1)
            self.assertEqual(rename.execute(connection, {"Name": "B", "b_key": "zz"}), 0)
        self.assertEqual(self.rows(), [("a", "B", 1, "plain")])
        listener = lambda *args: None
        event.listen(self.engine, "before_cursor_execute", listener)
        self.addCleanup(event.remove, self.engine, "before_cursor_execute", listener)
        with self.engine.begin() as connection:
            self.assertEqual(rename.execute(connection, {"Name": "C", "b_key": "a"}), 1)
            self.assertEqual(rename.execute(connection, {"Name": "C", "b_key": "zz"}), 0)

    def test_inTheCallersTransaction(self):
        insertThing = DirectStatement(insert(self.table))
        with self.engine.connect() as connection:
            with connection.begin() as transaction:
                insertThing.execute(connection, {"Key": "a", "Name": "A", "Count": 1, "Kind": "k"})
                transaction.rollback()
        self.assertEqual(self.rows(), [])

    def test_databaseErrorsAreSQLAlchemys(self):
        insertThing = DirectStatement(insert(self.table))
        with self.engine.begin() as connection:
            insertThing.execute(connection, {"Key": "a", "Name": "A", "Count": 1, "Kind": "k"})
            self.assertRaises(IntegrityError, insertThing.execute, connection,
                              {"Key": "a", "Name": "again", "Count": 2, "Kind": "k"})

    def test_pythonDefaultsGoThroughSQLAlchemy(self):
        """Kind's default is Python-side: only SQLAlchemy would fill it in."""
        insertThing = DirectStatement(insert(self.table))
        with self.engine.begin() as connection:
            insertThing.execute(connection, {"Key": "a", "Name": "A", "Count": 1})
        self.assertEqual(self.rows(), [("a", "A", 1, "plain")])

    def test_processedValuesDirectly(self):
        """SQLite stores a DateTime as text SQLAlchemy formats: its type's
        processors are applied both ways."""
        import datetime
        stamp = datetime.datetime(2026, 12, 3, 4, 5, 6)
        insertThing = DirectStatement(insert(self.table))
        with self.engine.begin() as connection, self.direct():
            insertThing.execute(connection, {"Key": "a", "Seen": stamp, "Kind": "k"})
            seen = DirectStatement(select(self.table.c.Seen).where(self.table.c.Key == bindparam("b_key")))
            self.assertEqual(seen.execute(connection, {"b_key": "a"}), [(stamp,)])

    def test_keyListDirectly(self):
        """DirectKeyList: the rows of the keys that exist, in statements of
        ``chunk`` keys at most, none for no key, all on the DBAPI cursor."""
        with self.engine.begin() as connection:
            connection.execute(insert(self.table), [{"Key": key, "Name": key.upper(), "Count": count}
                                                    for count, key in enumerate("abcde")])
        byKeys = DirectKeyList(select(self.table.c.Key, self.table.c.Count), self.table.c.Key, chunk=2)
        statements, execute = [], DirectStatement.execute
        self.patch(DirectStatement, "execute", lambda *args: statements.append(1) or execute(*args))
        with self.engine.begin() as connection, self.direct():
            self.assertEqual(sorted(byKeys.rows(connection, ["e", "zz", "a", "c", "yy"])),
                             [("a", 0), ("c", 2), ("e", 4)])
            self.assertEqual(len(statements), 3)
            self.assertEqual(byKeys.rows(connection, ["b"]), [("b", 1)])
            self.assertEqual(byKeys.rows(connection, []), [])
        self.assertEqual(len(statements), 4)

    def test_keyListDeletesDirectly(self):
        """DirectKeyList of a delete: the rows of the keys removed, in
        statements of ``chunk`` keys at most, on the DBAPI cursor; how many."""
        with self.engine.begin() as connection:
            connection.execute(insert(self.table), [{"Key": key, "Name": key.upper(), "Count": 0} for key in "abcde"])
        byKeys = DirectKeyList(delete(self.table), self.table.c.Key, chunk=2)
        with self.engine.begin() as connection, self.direct():
            self.assertEqual(byKeys.execute(connection, ["e", "zz", "a", "c", "yy"]), 3)
            self.assertEqual(byKeys.execute(connection, []), 0)
        self.assertEqual(self.rows(), [("b", "B", 0, "plain"), ("d", "D", 0, "plain")])

    def test_expandingGoesThroughSQLAlchemy(self):
        with self.engine.begin() as connection:
            connection.execute(insert(self.table), [{"Key": k, "Name": k.upper(), "Count": 0} for k in "abc"])
            some = DirectStatement(select(self.table.c.Key).where(
                self.table.c.Key.in_(bindparam("b_keys", expanding=True))).order_by(self.table.c.Key))
            self.assertEqual(some.execute(connection, {"b_keys": ["a", "c"]}), [("a",), ("c",)])

    def test_listenersSeeEveryStatement(self):
        """With a statement listener on the engine, SQLAlchemy runs them all."""
        statements = []
        listener = lambda conn, cursor, statement, *rest: statements.append(statement)
        event.listen(self.engine, "before_cursor_execute", listener)
        self.addCleanup(event.remove, self.engine, "before_cursor_execute", listener)
        with self.engine.begin() as connection:
            self.byKey.execute(connection, {"b_key": "a"})
        self.assertEqual(len(statements), 1)
        self.assertIn("WHERE", statements[0])
