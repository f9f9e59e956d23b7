"""Person names without what PS3.5 6.2 lets them leave out, in Python and
in SQL (SQLite here; test_postgresql and test_mysql run the index query
tests that use it on those servers)."""

from sqlalchemy import create_engine, literal, select
from twisted.trial import unittest

from pacscore.db.personnames import personName, storedPersonName

NAMES = {
    "Doe^John": "Doe^John", "Doe^John^^^": "Doe^John", "Doe^John^^^^=": "Doe^John", "Doe^^^John": "Doe^^^John",
    "Doe^John==": "Doe^John", "Yamada^Taro^^=山田^太郎^=^^": "Yamada^Taro=山田^太郎",
    "=山田^太郎^": "=山田^太郎", "^^^": "", "=^=": "", "Doe*^": "Doe*", "": "",
}


class PersonNameTests(unittest.TestCase):

    def test_inPython(self):
        self.assertEqual({name: personName(name) for name in NAMES}, NAMES)

    def test_inSQL(self):
        with create_engine("sqlite://").connect() as connection:
            self.assertEqual({name: connection.execute(select(storedPersonName(literal(name)))).scalar()
                              for name in NAMES}, NAMES)
