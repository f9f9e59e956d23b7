"""zope.interface contracts for the pieces that plugins provide.

Built-in implementations live in the ``plugins`` package and are found by
``pacscore.pluginset`` exactly as third-party ones are; a plugin lacking
what its interface asks for (checked with ``verifyObject``) is left out.
"""

from zope.interface import Attribute, Interface


class IDatabaseDriver(Interface):
    """A database back end for the index (SQLite, PostgreSQL, MySQL ...).

    Chosen by name, the way twisted.cred's ``--auth`` picks a checker: the
    scheme of ``--db SCHEME:...`` or, without ``--db``, a driver whose
    ``selectedBy`` accepts the dicom.ini: the built-in SQLite one, which
    accepts every dicom.ini that asks for no other database, only when no
    other driver does; of several others the first by name, logged.
    """

    name = Attribute("Scheme used in --db strings and logs, e.g. 'sqlite'.")
    description = Attribute("One line shown by 'twistd pacs --help-db'.")
    writerThreads = Attribute("How many threads may write at once (1 for SQLite).")

    def selectedBy(configuration):
        """True when this dicom.ini (a ``pacscore.config.loader.Configuration``)
        asks for this driver, e.g. with a key of its own (``PostGres = 1``);
        it wins over the SQLite default, which accepts it too."""

    def urlFromConfiguration(configuration):
        """The ``--db`` string equivalent to the dicom.ini settings
        (SQLServer, SQLHost, Username, Password)."""

    def createEngine(description, configuration):
        """A SQLAlchemy ``Engine`` for ``description`` (``SCHEME:...``), set up
        for this back end (pragmas, pool, isolation). Relative paths resolve
        against ``configuration.workdir``."""

    # Optional, for databases kept in local files (the SQLite driver has them):
    #   localFolder(description, configuration): the folder holding the files;
    #   deferSync(connection): make the index writer's SQLAlchemy connection
    #     commit without flushing, because the archive then flushes
    #     localFolder's file system after each of its commits;
    #   fileWatch(description, configuration): a
    #     ``pacscore.db.filewatch.DatabaseFileWatch`` of the database file,
    #     so that stores fail once it is deleted or replaced under pacs;
    #   damage(engine): why the database files are damaged, or None;
    #   setAside(description, configuration): move damaged files out of the
    #     way (``dgate -i``/``-r`` then start a new database), returning where;
    #   schemaTransaction(engine, takeover): a context manager giving the
    #     connection in which the index tables are made and adapted, in one
    #     transaction that holds the DDL too; with takeover (a database pacs
    #     did not make: Conquest's) a copy of it is kept first.
    # And for any driver:
    #   indexTablesBuilt(metadata, tables): attach DDL events to the index
    #     tables (``pacscore.db.schema.Tables``) before they are created;
    #   keepsIndex: False when the index tables never keep a row (the NULL
    #     driver), so that start-up does not offer ``dgate -r``.


class IConverterCommand(Interface):
    """One command of Conquest's converter language (manual 7.2, the command
    table under ImportConverters): ``set``, ``forward compressed as``,
    ``ifequal`` ...

    Found by ``pacscore.pluginset``; the built-in commands are plugins
    too.  A converter line is parsed once, when the configuration is read,
    into a tree of (command, parsed arguments); it runs from that tree for
    every object.
    """

    name = Attribute("The words that start the command, lower case, single spaces: 'set', 'nop', "
                     "'forward compressed as', 'ifequal'. The longest registered name that starts a "
                     "statement wins, so 'forward compressed as' beats 'forward'.")
    scope = Attribute("Where the manual allows it: 'I' import converters only, 'E' export converters "
                      "only, 'IE' both. Query/retrieve converters count as import converters.")
    condition = Attribute("True for tests (the if... family, between): the statement after it runs "
                          "only when ``run`` gives True.")

    def parse(arguments, where):
        """Check and pre-parse ``arguments`` (the statement's text after the
        name, stripped; %-variables still unexpanded). ``where`` names the
        place for messages (``ImportConverter0, column 12``). Returns what
        ``run`` gets; raises ``pacscore.converters.context.ConverterSyntaxError``
        (any other exception is reported as one, naming the plugin)."""

    def run(arguments, context):
        """Carry the command out on ``context`` (a
        ``pacscore.converters.context.ConverterContext``) with the parsed
        ``arguments``. Called in a worker thread, never in the reactor
        thread: blocking work (files, SQL, subprocesses, Lua) is fine here,
        and anything that needs the reactor goes through
        ``context.blockingCallFromThread``. Changes ``context.dataset`` in
        place: assigning another object to it fails the command, as raising
        does (logged, the line ends as with ``stop``). Returns an ``Outcome``
        (or a bool for a condition), or a Deferred that has already fired
        with one."""

    # Optional (absent means False):
    #   reachesOutside: True for a command that runs a program or writes a
    #     file it is told to (system, save to, write ...): a sandboxed Lua
    #     script's script() may not run it.


class IControlCommand(Interface):
    """One command of the control port, sent as ``dgate --name:arguments``
    (Conquest's manual, appendix 6): ``display_status``, ``get_param``,
    ``deletepatient`` ...

    Found by ``pacscore.pluginset``; the built-in ones
    are plugins too, so a third party can add commands.
    """

    name = Attribute("The command word as typed after '--', lower case: 'display_status', 'get_amap'.")
    usage = Attribute("One line for 'dgate -?', e.g. '--get_param:name,fmt  Read any parameter from DICOM.INI'.")

    def run(arguments, context):
        """Carry the command out. ``arguments`` is the text after the first
        ':' ('' when none); ``context`` a
        ``pacscore.control.context.ControlContext``. Called in the reactor
        thread: anything that blocks (SQL, files, DICOM) goes through the
        archive's Deferred APIs (``index.runQuery``/``runWrite``,
        ``workers.deferToWorker``, the DICOM client). Returns the output
        text (str, may be empty, lines separated by '\\n') or a Deferred of
        it; a long command reports progress with ``context.progress(text)``.
        Bad arguments or a failure: raise (or errback with)
        ``pacscore.control.context.CommandError``."""

    # Optional (absent means False):
    #   readOnly: True for a command that changes nothing (archive, index,
    #     configuration, the server's state) and reads no file its caller
    #     names: the only ones sandboxed Lua scripts may run (with their
    #     context's 'sandboxed' set: no output file, no secret).
    #   loggedArguments(arguments): the arguments as the server log shows
    #     them (absent: as they are), for a command given a secret.
