"""The index on a real MariaDB server through the MySQL driver: the tests
of tests.pacscore.db.onserver run again on its engine (each test on a new
database of the test run's server, see tests.dbservers)."""

from sqlalchemy import text

from plugins.pacs_mysql import mysqlDriver
from tests.dbservers import mariadbServer
from tests.pacscore.db.onserver import casesOn


class OnMySQL:
    def makeEngine(self):
        return mariadbServer().newEngine(mysqlDriver, self)

    def refuseImageNumber(self, value):
        """Make the database itself refuse images with this ImageNumber."""
        with self.engine.begin() as connection:
            connection.execute(text(
                "CREATE TRIGGER refuse BEFORE INSERT ON DICOMImages FOR EACH ROW BEGIN "
                f"IF NEW.ImageNumber = '{value}' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; "
                "END IF; END"))


globals().update(casesOn(OnMySQL))
