"""zope.interface contracts for the pieces that plugins provide.

Built-in implementations live in the ``plugins`` package and are found with
``twisted.plugin.getPlugins`` exactly as third-party ones are.
"""

from zope.interface import Attribute, Interface


class IDatabaseDriver(Interface):
    """A database back end for the index (SQLite, PostgreSQL, MySQL ...).

    Chosen by name, the way twisted.cred's ``--auth`` picks a checker: the
    scheme of ``--db SCHEME:...`` or, without ``--db``, the first driver
    whose ``selectedBy`` accepts the dicom.ini.
    """

    name = Attribute("Scheme used in --db strings and logs, e.g. 'sqlite'.")
    description = Attribute("One line shown by 'twistd pacs --help-db'.")
    writerThreads = Attribute("How many threads may write at once (1 for SQLite).")

    def selectedBy(configuration):
        """True when this dicom.ini (a ``pacscore.config.loader.Configuration``)
        asks for this driver, e.g. ``SQLite = 1`` or no other flag set."""

    def urlFromConfiguration(configuration):
        """The ``--db`` string equivalent to the dicom.ini settings
        (SQLServer, SQLHost, Username, Password)."""

    def createEngine(description, configuration):
        """A SQLAlchemy ``Engine`` for ``description`` (``SCHEME:...``), set up
        for this back end (pragmas, pool, isolation). Relative paths resolve
        against ``configuration.workdir``."""
