"""The image index: Conquest's tables, a group-commit writer, a reader pool.

Nothing here blocks the reactor: ``store`` and ``runWrite`` go to the
writer thread(s), ``runQuery`` to a pool of reader threads, and their
results come back as Deferreds.  ``createTables``, ``initializeTables`` and
``storeMany`` are synchronous, for startup and offline tools (``dgate -i``,
``dgate -r``).  The writer's flusher thread calls ``durability.flush`` (see
``pacscore.storage.durability``) for what was committed before anything of
it is acknowledged.  With a ``timeout`` (dicom.ini's ``SQLTimeOut``), a
store the database does not answer within it fails (``IndexTimeout``) and
``stop`` waits as long at most (its statements run in daemon threads, which
it leaves behind); so does a ``queryForPeer`` on a database
server that gives it nothing for that long from when it is asked (its wait
for a reader thread counts; ``runQuery`` leaves one reader thread to these
queries; ``pacscore.db.peerqueries``; SQLite, in the process, hangs no read): a
database server that hangs holds up no C-STORE, C-FIND, C-MOVE, C-GET or
shutdown for longer.  Other writes and queries (maintenance scans, deletes,
the web interface) are not cut short.
"""

import contextlib
import functools
import itertools
import threading

from sqlalchemy import MetaData, inspect, select
from sqlalchemy.schema import CreateIndex
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from pacscore.db.completeness import IndexCompleteness
from pacscore.db.errors import DATABASE_FAILURES, IndexStopped, IndexTimeout, databaseMessage
from pacscore.db.peerqueries import PeerQuery
from pacscore.db.pending import PendingFiles
from pacscore.db.pendingdeletes import PendingDeletes
from pacscore.db.rawsql import DEFAULT_TRUNCATE, IdentifierQuoter
from pacscore.db.rawtext import adoptRawText
from pacscore.db.regenmarks import RegenMarks
from pacscore.db.repertoire import held
from pacscore.db.records import (ImageRecord, InconsistentLink, NotReentered, Replaced, Upserter, buildLevels, checkKeys,
                                 checkRecord)
from pacscore.db.schema import (INDEXED_COLUMNS_EMPTY, WORKLIST_COLUMNS_EMPTY, addMissingColumns, adoptCollation,
                                adoptFoldedTable, adoptTruncatedColumns, buildTables, createMissingTables,
                                matchColumnWidths, upgradeTable)
from pacscore.db.windowspaths import adoptWindowsPaths, holdsWindowsPaths, pathColumns
from pacscore.db.writer import BatchRunner, GroupCommitWriter, callEach
from pacscore.storage.attributes import DatasetError
from pacscore.storage.durability import PerFileSync

__all__ = ["ImageRecord", "InconsistentLink", "Index", "NotReentered", "Replaced"]

# Who made the index tables of a database (``Index.madeBy``)
PACS, EARLIER_PACS, CONQUEST = "pacs", "an earlier pacs", "Conquest"


class Index:
    """The index of one archive; ``start``/``stop`` for a wrapping Service.

    ``durability`` is the archive's ``PerFileSync`` or ``FileSystemFlush``;
    ``onWriterConnect(connection)`` prepares each writer connection (the
    SQLite driver's ``deferSync`` when the flush covers the database);
    ``onTablesBuilt(metadata, tables)`` (the driver's optional
    ``indexTablesBuilt``) may attach DDL events to the tables;
    ``fileWatch`` (the driver's optional ``fileWatch``, a
    ``DatabaseFileWatch``) fails the writes committed once the database
    file was deleted or replaced; ``schemaTransaction(engine, takeover)``
    (the driver's optional one) is the context of the connection in which
    the tables are made and adapted, in one transaction, and keeps a copy of
    a database pacs did not make (Conquest's, ``takeover``) before it
    changes.
    """

    log = Logger()
    storeManyBatch = 500

    def __init__(self, engine, layout, tableNames, writerThreads=1, readerThreads=4,
                 reactor=None, durability=None, onWriterConnect=None, allowTruncate=frozenset(),
                 onTablesBuilt=None, truncateFieldNames=DEFAULT_TRUNCATE, timeout=None, fileWatch=None,
                 schemaTransaction=None):
        if reactor is None:
            from twisted.internet import reactor
        self.engine = engine
        self.layout = layout
        self.reactor = reactor
        self.metadata = MetaData()
        self.tableNames = dict(tableNames)  # level -> name, StudyTableName ... as the tables were built
        self.tables = buildTables(layout, tableNames, self.metadata)
        self._levels = buildLevels(self.tables, layout, allowTruncate, engine.dialect)
        if onTablesBuilt is not None:
            onTablesBuilt(self.metadata, self.tables)
        # Operators' SQL text (dgate --query, export filters) naming these
        # tables and columns in any case, maybe cut to TruncateFieldNames
        # characters, as the database stores them.
        self.quoteNames = IdentifierQuoter(self.tables, engine.dialect, truncateFieldNames)
        self.durability = durability or PerFileSync()
        self.pending = PendingFiles(self.metadata)
        self.regens = RegenMarks(self.metadata)
        self.deletes = PendingDeletes(self.metadata)
        self._rebuilds = 0  # the regens re-entering files (``rebuilding``)
        self.completeness = IndexCompleteness()  # the devices whose objects it may miss until a regen
        self._upserters = {}  # writer thread ident -> its Upserter
        self._writer = GroupCommitWriter(engine, reactor, writerThreads,
                                         onRollback=self._forgetWriterCache, onConnect=onWriterConnect,
                                         afterCommit=self._afterCommit, timeout=timeout)
        self.timeout = timeout
        # an SQLite read (no server to hang) waits for no deadline
        self.readTimeout = None if engine.dialect.name == "sqlite" else timeout
        self.fileWatch = fileWatch
        self.schemaTransaction = schemaTransaction
        self.readerThreads = readerThreads
        self._readers = None  # a ThreadPool while started
        # runQuery leaves a reader thread to the queries of DICOM peers (queryForPeer)
        self._unhurried = defer.DeferredSemaphore(max(1, readerThreads - 1))
        # afterUpsert(connection, records): called by the writer inside the
        # transaction of stored records (not storeMany), e.g. to queue their
        # export jobs atomically with them.
        self.afterUpsert = None

    def createTables(self, characterSetOf=None):
        """Create the missing tables and indexes (an index added by a newer
        version also appears in an existing database); tables Conquest
        made on PostgreSQL are taken over first (``adoptFoldedTable``), and
        Conquest's column names cut to 10 characters restored
        (``adoptTruncatedColumns``), columns an older layout lacks added
        (``addMissingColumns``), and on SQLite its text that is not
        UTF-8 rewritten, once (``adoptRawText``); existing ones on MySQL are made
        to compare exactly (``adoptCollation``).  No index is made where the
        table's primary key (Conquest's) is the same.  All in one
        transaction (``schemaTransaction``): a takeover is done in full or
        not at all.  ``characterSetOf(deviceName, objectFile)``: the Specific
        Character Set of a stored file, for ``adoptRawText``."""
        with self._changingSchema() as connection:
            self._buildTables(connection, characterSetOf=characterSetOf)

    def _changingSchema(self):
        """The context of the connection for ``_buildTables``: the driver's
        ``schemaTransaction``, told whether the database is one pacs did not
        make (Conquest's, see ``madeBy``), or a transaction of the engine."""
        if self.schemaTransaction is None:
            return self.engine.begin()
        with self.engine.connect() as connection:
            return self.schemaTransaction(self.engine, self.madeBy(connection) == CONQUEST)

    def madeBy(self, connection):
        """Who made the database's index tables: ``PACS`` (they come with
        the ``PendingFiles`` table pacs makes with them), ``EARLIER_PACS``
        (without it, but with the unique index pacs names
        ``ux_DICOMImages_SOPInstanceUID``, as its releases before that
        table made it), ``CONQUEST`` (neither), or None (there is no
        index table)."""
        inspector = inspect(connection)
        present = {name.lower(): name for name in inspector.get_table_names()}
        if self.pending.table.name.lower() in present:
            return PACS
        if not any(table.name.lower() in present for table in self.tables):
            return None
        image = present.get(self.tables.image.name.lower())
        ours = {index.name.lower() for index in self.tables.image.indexes if index.unique}
        if image is not None and any(index["name"].lower() in ours for index in inspector.get_indexes(image)):
            return EARLIER_PACS
        return CONQUEST

    def _buildTables(self, connection, dropped=(), characterSetOf=None):
        """``createTables`` in ``connection``, after dropping ``dropped``
        (then text left as Conquest stored it is checked again)."""
        if dropped:  # made again below, not new to the database: createMissingTables does not tell them
            self.metadata.drop_all(connection, tables=dropped)
            self.metadata.create_all(connection, tables=dropped)
        for table in self.tables:
            adoptFoldedTable(connection, table, self.log)
            adoptTruncatedColumns(connection, table, self.log)
        columns = pathColumns(connection, self.tables)
        madeBy = self.madeBy(connection)
        if madeBy == EARLIER_PACS:
            self.log.info("Upgrading {database}, the index database of an earlier pacs release",
                          database=self.engine.url.database)
        if madeBy == CONQUEST or holdsWindowsPaths(connection, columns):
            # before adoptRawText, which reads files by their / names
            adoptWindowsPaths(connection, columns, self.log)
        adoptRawText(connection, self.tables, self.log, layout=self.layout, recheck=bool(dropped),
                     characterSetOf=characterSetOf)
        createMissingTables(connection, self.metadata, self.log)
        for table in self.tables:
            addMissingColumns(connection, table, self.log,
                              WORKLIST_COLUMNS_EMPTY if table is self.tables.worklist else INDEXED_COLUMNS_EMPTY)
        upgradeTable(connection, self.pending.table, self.log)
        upgradeTable(connection, self.deletes.table, self.log)
        dialect = connection.dialect.name
        for table in self.tables:
            adoptCollation(connection, table, self.log)
            matchColumnWidths(connection, table, self.log)
            primaryKey = [name.lower() for name in
                          inspect(connection).get_pk_constraint(table.name)["constrained_columns"]]
            for index in table.indexes:
                if dialect not in index.info.get("dialects", (dialect,)):
                    continue
                if index.unique and [column.name.lower() for column in index.columns] == primaryKey:
                    continue
                if dialect == "mysql":  # no CREATE INDEX IF NOT EXISTS in MySQL
                    index.create(connection, checkfirst=True)
                else:  # SQLite's reflection (checkfirst) does not see indexes on expressions
                    connection.execute(CreateIndex(index, if_not_exists=True))
        self._fillModalities(connection)

    def _fillModalities(self, connection):
        """Fill the study modalities column that the pacs releases before
        it was written left empty (``Upserter.fillModalities``), logged:
        queries on ModalitiesInStudy would miss those studies, and stores
        merge into it as if it were whole."""
        studies = Upserter(self._levels).fillModalities(connection)
        if studies:
            self.log.info("Table {table}: the {column} of {count} study(ies) was empty beside series with a Modality "
                          "(indexed by an earlier pacs release, which did not write it): made of their series' "
                          "Modality (a series' last object's: a study whose series hold objects of other modalities, "
                          "such as a screen capture in a CT series, gets its exact value from 'dgate -r')",
                          table=self.tables.study.name,
                          column=self._levels[1].modalities.name, count=len(studies))

    def hasImages(self):
        """Whether the image table holds a row (synchronous, for start-up)."""
        with self.engine.connect() as connection:
            return connection.execute(select(self.tables.image.c[0]).limit(1)).first() is not None

    def interruptedRegens(self):
        """The names of the devices whose regeneration was interrupted
        (``RegenMarks``; synchronous, for start-up)."""
        with self.engine.connect() as connection:
            return self.regens.names(connection)

    def devicesInUse(self, deviceNames):
        """Those of ``deviceNames`` that an image row names (synchronous)."""
        column = self.tables.image.c.DeviceName
        with self.engine.connect() as connection:
            return sorted(name for name in deviceNames
                          if connection.execute(select(column).where(column == name).limit(1)).first() is not None)

    @property
    def imageKey(self):
        """The image table's key column (SOPInstanceUID in dicom.sql)."""
        return self._levels[3].key

    def storedOn(self, connection, deviceName):
        """``(SOPInstanceUID, ObjectFile)`` of every image on ``deviceName``."""
        columns = self.tables.image.c
        return connection.execute(select(self.imageKey, columns.ObjectFile).where(columns.DeviceName == deviceName)
                                  .order_by(columns.ObjectFile)).all()

    def initializeTables(self, worklist=False, connection=None, regenerating=()):
        """Drop and recreate the patient/study/series/image tables, or with
        ``worklist=True`` only the worklist table; with ``connection`` (in
        ``runWrite``) inside its transaction, else (``dgate -i``) with what
        ``createTables`` does, in the same transaction (a database pacs did
        not make is kept first).  The image tables' marks of regenerations
        under way become ``regenerating`` (the names of the devices about to
        be regenerated; none for a plain initialisation), in the same
        transaction."""
        tables = ([self.tables.worklist] if worklist else
                  [self.tables.patient, self.tables.study, self.tables.series,
                   self.tables.image])
        if connection is None:
            with self._changingSchema() as connection:
                self._buildTables(connection, dropped=tables)
                self._markRegens(connection, worklist, regenerating)
        else:
            self.metadata.drop_all(connection, tables=tables)
            self.metadata.create_all(connection, tables=tables)
            self._markRegens(connection, worklist, regenerating)
        self.forgetCache()
        self.log.info("Initialized {tables}", tables=", ".join(t.name for t in tables))

    def _markRegens(self, connection, worklist, regenerating):
        if not worklist:
            self.regens.unmark(connection)
            self.regens.mark(connection, regenerating)

    def upsertImage(self, connection, record):
        """Write one ``ImageRecord`` inside the caller's transaction (no
        cache).  ``Replaced`` of the file it replaces, or None."""
        return self.upsertImages(connection, [record])[0]

    def upsertImages(self, connection, records):
        """``upsertImage`` of several records, one ``Replaced`` or None each."""
        return Upserter(self._levels).upsertImages(connection, records)

    def indexedFiles(self, connection, sopInstanceUIDs):
        """``{SOPInstanceUID: Replaced(device, file)}`` of those of
        ``sopInstanceUIDs`` an image row holds, inside the caller's
        transaction."""
        return Upserter(self._levels).indexedFiles(connection, list(sopInstanceUIDs))

    def rebuildModalities(self, connection, studyKeys):
        """Make the study modalities column of the studies ``studyKeys``
        again of their series' Modality (``Upserter.rebuildModalities``),
        inside the caller's transaction, in the writer (``runWrite``: its
        statements built once)."""
        self._writerUpserter().rebuildModalities(connection, list(studyKeys))

    def refreshParents(self, connection, keys, recordOf):
        """Give the patient, study and series rows ``keys`` left after a delete the
        values of the object of each stored last
        (``Upserter.refreshParents``), inside the caller's transaction, in
        the writer (``runWrite``: its statements built once)."""
        self._writerUpserter().refreshParents(connection, keys, recordOf)

    def heldFileName(self, path):
        """The ``path`` of a stored object's file as the index can hold it:
        with a ``_`` (as FileNameSyntax cleans a name) for each character
        the database cannot hold (``repertoire.held``)."""
        return held(self.engine.dialect, path, "_")

    def checkKeys(self, attrs):
        """``ValueError`` unless the object of ``attrs`` can key its rows:
        study, series and SOP instance UIDs, none of its keys longer than
        its column (``records.checkKeys``)."""
        checkKeys(self._levels, attrs)

    def checkLinks(self, record):
        """``InconsistentLink`` if storing ``record`` would move a study,
        series or image row that it may not (``Upserter.checkLinks``): synchronous,
        read in the calling thread, for a store about to overwrite a file;
        ``NotReentered`` while ``rebuilding`` if it would be refused so."""
        with self.engine.connect() as connection:
            Upserter(self._levels).checkLinks(connection, record, entered=bool(self._rebuilds))

    def store(self, record):
        """Deferred firing with ``Replaced`` or None once the record's
        transaction has committed; ``ValueError`` for unusable records."""
        try:
            checkRecord(self._levels, record)
        except ValueError:
            return defer.fail()
        return self._writer.submit(self._upsertInWriter, record, timed=True)

    def storeFromThread(self, record, onResult):
        """``store`` for any thread: ``onResult(ok, value)`` is called in
        the reactor thread once committed (``value`` is ``Replaced``/None,
        or a Failure)."""
        try:
            checkRecord(self._levels, record)
        except ValueError:
            self.reactor.callFromThread(onResult, False, Failure())
            return
        self._writer.enqueue(self._upsertInWriter, record, onResult, timed=True)

    def storeMany(self, records):
        """Synchronously index ``records`` (any iterable), one transaction
        per ``storeManyBatch``; one ``Replaced`` or None per record.

        A failing record does not stop the others of its batch from being
        committed; then its error is raised (``ValueError`` for unusable
        records) and later batches are not written."""
        upserter = Upserter(self._levels)
        runner = BatchRunner(self.engine, upserter.forgetCache)
        records = iter(records)
        results = []
        try:
            while batch := list(itertools.islice(records, self.storeManyBatch)):
                outcomes = runner.run([(upserter.upsertImages, record) for record in batch])
                for ok, value in outcomes:
                    if not ok:
                        value.raiseException()
                results += [value for _, value in outcomes]
        finally:
            runner.closeConnection()
        return results

    def runWrite(self, fn, *args, **kw):
        """Deferred of ``fn(connection, *args, **kw)`` run by the writer,
        in order with stores and group-committed with them.

        For deletes and merges: ``fn`` runs in the writer thread, so it
        should call ``forgetCache()`` after changing rows.  It may run twice
        (see ``BatchRunner``)."""
        return self._writer.submit(callEach, (fn, args, kw))

    def writeForPeer(self, fn, *args, **kw):
        """``runWrite`` for a peer waiting on the answer (an HL7 sender):
        failed with ``IndexTimeout`` once the database did not commit it
        within ``timeout`` seconds, as a C-STORE's write."""
        return self._writer.submit(callEach, (fn, args, kw), timed=True)

    def runQuery(self, fn, *args, **kw):
        """Deferred of ``fn(connection, *args, **kw)`` run in a reader thread,
        however long it takes; all but one of the reader threads at a time."""
        if self._readers is None:
            return defer.fail(IndexStopped("the index is not started"))
        return self._unhurried.run(threads.deferToThreadPool, self.reactor, self._readers, self._withConnection,
                                   fn, args, kw)

    def queryForPeer(self, fn, *args, **kw):
        """``runQuery`` for a DICOM peer waiting on the answer (C-FIND,
        C-MOVE, C-GET): failed with ``IndexTimeout`` once a database server
        gave it nothing for ``readTimeout`` seconds from its submission,
        stopped when cancelled (see ``pacscore.db.peerqueries``)."""
        if self._readers is None:
            return defer.fail(IndexStopped("the index is not started"))
        return PeerQuery(self.reactor, self.readTimeout).submit(self._readers, self._withConnection, fn, args, kw)

    def forgetCache(self):
        """Make the writers re-read patient/study/series rows.

        Needed whenever rows change other than through ``store``: deletes,
        merges, ``initializeTables``.  Callable from any thread; call it
        from ``runWrite`` to be ordered with pending stores."""
        for upserter in list(self._upserters.values()):
            upserter.forgetCache()

    def start(self):
        """Start the writer thread(s) and the reader pool."""
        if self.fileWatch is not None:
            self.fileWatch.start()
        self._writer.start()
        if self._readers is None:
            self._readers = ThreadPool(0, self.readerThreads, name="pacs-db-reader")
            # one waiting on a database server that hangs must not keep the process from ending
            self._readers.threadFactory = functools.partial(threading.Thread, daemon=True)
            self._readers.start()

    def stop(self):
        """Deferred firing when every pending write is committed, the marks
        of flushed writes are dropped and the reader threads have ended
        (joined off the reactor thread), or, with a ``timeout``, once that
        has passed since the call: then the writer's marks stay for the
        next start and the threads waiting on the database are left behind
        (daemon threads: they hold no exit)."""
        readers, self._readers = self._readers, None
        deadline = None if self.timeout is None else self.reactor.seconds() + self.timeout
        d = self._writer.stop()
        d.addCallback(self._writerStopped, readers, deadline)
        d.addCallback(lambda _: self._upserters.clear())
        return d

    def _writerStopped(self, finished, readers, deadline):
        if not finished:
            return None
        # every group flushed: no mark is needed at the next start
        dropMarks = self.durability.flushesAfterCommit
        if not dropMarks and readers is None:
            return None

        def finish():
            if dropMarks:
                with self.engine.begin() as connection:
                    self.pending.dropFlushed(connection)
            if readers is not None:
                readers.stop()
        d = _inDaemonThread(self.reactor, finish, deadline, self.timeout)
        d.addErrback(self._stopWithout)
        return d

    def _stopWithout(self, failure):
        failure.trap(*DATABASE_FAILURES)
        self.log.error("the index database failed while stopping ({error}): stopping without it (the marks of "
                       "the last writes are checked at the next start)", error=databaseMessage(failure.value))

    def _withConnection(self, fn, args, kw):
        with self.engine.connect() as connection:
            return fn(connection, *args, **kw)

    def _writerUpserter(self):
        thread = threading.get_ident()
        upserter = self._upserters.get(thread)
        if upserter is None:
            upserter = self._upserters[thread] = Upserter(self._levels)
        return upserter

    def recoverPending(self, fileError, recordOf, removeReplaced=None):
        """At start-up, before the writer starts: see ``PendingFiles.recover``;
        ``recordOf(deviceName, objectFile)`` reads the ``ImageRecord`` of an
        earlier copy to index again, ``removeReplaced(files)`` removes
        earlier copies no row names (how many were there)."""
        upserter = Upserter(self._levels)

        def indexAgain(connection, files):
            records = []
            for deviceName, objectFile in files:
                try:
                    record = recordOf(deviceName, objectFile)
                    checkRecord(self._levels, record)
                except (OSError, DatasetError, ValueError) as e:
                    self.log.error("{device}:{path} cannot be indexed again ({error}); run dgate -r",
                                   device=deviceName, path=objectFile, error=e)
                    continue
                records.append(record)
            upserter.upsertImages(connection, records)

        with self.engine.begin() as connection:
            return self.pending.recover(connection, fileError, upserter.indexedAt, upserter.deleteImagesAt,
                                        indexAgain, removeReplaced)

    @contextlib.contextmanager
    def rebuilding(self):
        """While in it, for a regen of marked devices (the index may miss
        their objects until it ends), a store whose
        study or series row is not entered yet is refused (``NotReentered``,
        ``Upserter.upsertImages``'s ``entered``): entered, it could link a study or
        series to another patient or study than the files not re-entered
        yet, which the regen would then refuse."""
        self._rebuilds += 1
        try:
            yield
        finally:
            self._rebuilds -= 1

    def _upsertInWriter(self, connection, records):
        results = self._writerUpserter().upsertImages(connection, records, entered=bool(self._rebuilds))
        self.deletes.clear(connection, [record.attrs[self._levels[3].keyTag] for record in records])
        if self.durability.flushesAfterCommit:
            self.pending.mark(connection, records, results)
        if self.afterUpsert is not None:
            self.afterUpsert(connection, records)
        return results

    def _afterCommit(self, requests):
        """In the writer's flusher thread: make the commits and their images'
        files durable."""
        if self.fileWatch is not None:
            self.fileWatch.check()
        records = [item for fn, item in requests if fn == self._upsertInWriter]
        self.durability.flush(records)
        if records and self.durability.flushesAfterCommit:
            self.pending.flushed(records)

    def _forgetWriterCache(self):
        self._writerUpserter().forgetCache()


def _inDaemonThread(reactor, fn, deadline, timeout):
    """Deferred of ``fn()`` run in a daemon thread of its own, failed with
    ``IndexTimeout(timeout)`` at ``deadline`` (reactor seconds; None: none)
    if it has not returned by then: the thread is left behind."""
    d = defer.Deferred()

    def settle(ok, value):
        if not d.called:
            (d.callback if ok else d.errback)(value)

    def run():
        try:
            outcome = (True, fn())
        except BaseException:
            outcome = (False, Failure())
        reactor.callFromThread(settle, *outcome)
    threading.Thread(target=run, name="pacs-db-stop", daemon=True).start()
    if deadline is not None:
        seconds = max(deadline - reactor.seconds(), 0)
        timer = reactor.callLater(seconds, lambda: settle(False, Failure(IndexTimeout(timeout))))
        d.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
    return d
