"""Writing the modality worklist, and reading one item by Accession Number.

HL7 orders (``pacscore.hl7.mapping.OrderItem``) are applied to the worklist
table by their order control (ORC-1), keyed by the Accession Number column:

- NW (new order): insert; a repeated NW for an accession number already in
  the worklist replaces its values (a RIS re-sending an order must not
  create a twin item);
- XO (change order): update the item, refused when there is none;
- CA, DC, OC, CR, DR, OD (cancel / discontinue): delete the item; nothing
  to delete is not an error (the RIS's wish holds either way).
- SC (status changed), by its order status (ORC-5, HL7 table 0038): CA or
  DC delete the item as a cancel does, IP makes its Scheduled Procedure Step
  Status STARTED and CM COMPLETED (when there is a status column), but
  never of a COMPLETED or DISCONTINUED item (as MPPS never moves one off
  COMPLETED), which keeps its status; any other changes nothing
  (``Applied.action`` says so).  No other value of the
  item changes.

The values the mapping generated for an order (``OrderItem.generated``:
``*AN``, ``*UI`` the order sends no value for) do not replace those of the
item it updates, so a Study Instance UID handed to a modality stays valid;
one the order sends (IPC-3: the RIS's, which the modality must use), or
the web page's form, does.
All items of one message are applied in one transaction of the index
writer: a message is applied whole or not at all.

When dicom.sql gives the worklist a Scheduled Procedure Step Status
(0040,0020) column, a new item is SCHEDULED (unless its order says
otherwise) and ``markPerformed`` sets it from the modality's MPPS
(``pacscore.dicom.mpps``), so a worklist query can leave out started items
(``notTheirs`` names the items a step names by accession number whose
Scheduled Procedure Step ID, Study Instance UID, Requested Procedure ID or
Patient ID is another's: those are not marked);
given ``changeable``, a test of an item's current status, it marks only the
items it is true of and leaves the others as they are (``Marked.kept``).
A NW re-sent for a DISCONTINUED item (the RIS ordering it again) makes it
SCHEDULED again; one for a STARTED or COMPLETED item (a repeated message)
keeps its status, as an XO does.

Accession numbers an older version stored with the spaces around OBR-3
('A1 ') are trimmed at start-up (``check``), so that the orders a RIS
sends for them, MPPS and WorkListMode find them by equality, which the
column's index serves.

An order a sender waits on (``apply(..., forPeer=True)``: MLLP) is written
within SQLTimeOut or fails (``Index.writeForPeer``); its transaction, if
the database answers later, is rolled back before it commits, unless the
database hung on the commit itself.

``lookup`` is for ``WorkListMode``: it runs in the calling (I/O) thread.
``runWrite`` (default: the index's group-commit writer, ``runWrite`` or
``writeForPeer``) can be replaced, e.g. by tests that apply orders
synchronously.
"""

import threading
from typing import NamedTuple

from sqlalchemy import delete, func, insert, inspect, or_, select, update
from twisted.logger import Logger

from pacscore.db.peerqueries import Abandoned
from pacscore.logvalues import named

INSERT_CONTROLS = frozenset(("NW",))
UPDATE_CONTROLS = frozenset(("XO",))
DELETE_CONTROLS = frozenset(("CA", "DC", "OC", "CR", "DR", "OD"))
STATUS_CONTROL = "SC"
# orders for an existing item, which a generated accession number (``*AN``) cannot name
ITEM_CONTROLS = UPDATE_CONTROLS | DELETE_CONTROLS | {STATUS_CONTROL}
ORDER_CONTROLS = INSERT_CONTROLS | UPDATE_CONTROLS | DELETE_CONTROLS | {STATUS_CONTROL}
DELETE_STATUSES = frozenset(("CA", "DC"))  # order statuses (ORC-5) of an SC that delete the item

ACCESSION_NUMBER = 0x00080050
STEP_STATUS = 0x00400020
PATIENT_ID = 0x00100020
# what names a worklist item besides its accession number, as a performed step's scheduled step gives it
IDENTIFYING = {0x00400009: "Scheduled Procedure Step ID", 0x0020000D: "Study Instance UID",
               0x00401001: "Requested Procedure ID", PATIENT_ID: "Patient ID"}
SCHEDULED, STARTED, COMPLETED, DISCONTINUED = "SCHEDULED", "STARTED", "COMPLETED", "DISCONTINUED"
STEP_STATUSES = {"IP": STARTED, "CM": COMPLETED}  # order status (ORC-5) of an SC -> the step status it sets
FINISHED = frozenset((COMPLETED, DISCONTINUED))  # step statuses an SC never moves an item off


class Marked(NamedTuple):
    """What ``markPerformed`` did: the accession numbers of the items it
    ``changed``, and ``{accession number: status}`` of those it ``kept``."""

    changed: list
    kept: dict


class OrderRefused(Exception):
    """An order that was understood but cannot be applied (HL7 AE);
    ``code`` is its error code of HL7 table 0357 (ERR)."""

    def __init__(self, text, code=207):
        super().__init__(text)
        self.code = code


class Applied(NamedTuple):
    """What applying one order did: ``action`` is inserted, updated,
    replaced, deleted, absent (a cancel or status change of nothing),
    ``marked STATUS``, ``kept STATUS (ORC-5 ...)`` or ``unchanged (ORC-5
    ...)`` (a status change)."""

    control: str
    accessionNumber: str
    action: str


class WorklistItems:
    """The worklist table of an ``Index``, written through its writer."""

    log = Logger()

    def __init__(self, index, runWrite=None):
        self.index = index
        self.runWrite = runWrite or index.runWrite
        self.writeForPeer = runWrite or index.writeForPeer  # one given (tests) serves both
        self.table = index.tables.worklist
        dicomColumns = [c for c in index.layout.worklist if not c.isSequenceMarker]
        self.tagOf = {c.name: c.tag for c in dicomColumns}
        self.accessionColumn = self._columnOf(dicomColumns, ACCESSION_NUMBER)
        self.configuredStatusColumn = self._columnOf(dicomColumns, STEP_STATUS)  # dicom.sql's
        self.identifyingColumns = {tag: self._columnOf(dicomColumns, tag) for tag in IDENTIFYING
                                   if self._columnOf(dicomColumns, tag) is not None}
        self.statusColumn = self.configuredStatusColumn  # the one in use: None while the table lacks it

    def check(self):
        """At start-up: say so when dicom.sql has no *WorkList* table at
        all; ``checkStatusColumn`` on the database's table; trim the
        accession numbers an older version stored with spaces around them."""
        if not self.tagOf:
            self.log.warn("dicom.sql has no *WorkList* table (as before Conquest 1.4.9): modality worklist "
                          "queries find nothing and HL7 orders are refused")
        self.checkStatusColumn(self.index.engine)
        self._trimAccessionNumbers()

    def _trimAccessionNumbers(self):
        if self.accessionColumn is None:
            return
        key = self.table.c[self.accessionColumn]
        with self.index.engine.begin() as connection:
            trimmed = connection.execute(update(self.table).where(or_(key.like(" %"), key.like("% ")))
                                         .values({self.accessionColumn: func.trim(key)})).rowcount
        if trimmed > 0:
            self.log.info("{count} worklist items had spaces around their accession number (as an older version "
                          "stored OBR-3): trimmed", count=trimmed)

    def checkStatusColumn(self, connectable):
        """Use dicom.sql's status column only while the worklist table in
        the database (through ``connectable``: the engine at start-up, the
        writer's connection once the table is made again) has it: one that
        predates it (dicom.sql gained it without a ``dgate
        --initializetables:2``) is warned of, and MPPS and orders go on
        without it."""
        if self.configuredStatusColumn is None:
            return
        existing = {column["name"] for column in inspect(connectable).get_columns(self.table.name)}
        if self.configuredStatusColumn in existing:
            self.statusColumn = self.configuredStatusColumn
            return
        self.log.warn("the {table} table has no {column} column yet, so MPPS does not mark worklist items: "
                      "dgate --initializetables:2 makes it as dicom.sql says (and empties the worklist)",
                      table=self.table.name, column=self.configuredStatusColumn)
        self.statusColumn = None

    @staticmethod
    def _columnOf(columns, tag):
        names = [c.name for c in columns if c.tag == tag]
        return names[0] if names else None

    def apply(self, orders, forPeer=False):
        """Deferred firing with one ``Applied`` per order once committed;
        fails with ``OrderRefused`` (nothing of the message is applied), and
        ``forPeer`` with ``IndexTimeout`` after SQLTimeOut (then nothing of
        it is committed later, unless the database hung on the commit)."""
        if self.accessionColumn is None:
            raise OrderRefused("the WorkList table of dicom.sql has no AccessionNumber (0008,0050) column")
        if not forPeer:
            return self.runWrite(self._apply, orders)
        failed = threading.Event()
        d = self.writeForPeer(self._apply, orders, failed)
        d.addErrback(lambda failure: (failed.set(), failure)[1])
        return d

    def _apply(self, connection, orders, failed=None):
        """In the writer; ``failed`` set (the sender was answered that it
        failed): rolled back, not committed."""
        applied = [self._applyOne(connection, order) for order in orders]
        if failed is not None and failed.is_set():
            accessionNumbers = named((order.values.get(self.accessionColumn, "") for order in orders), "orders")
            raise Abandoned(f"HL7 order(s) {accessionNumbers} answered as failed (SQLTimeOut) before the database "
                            f"applied them")
        return applied

    def _applyOne(self, connection, order):
        key = self.table.c[self.accessionColumn]
        accession = order.values.get(self.accessionColumn, "")
        if not accession or (self.accessionColumn in order.generated and order.control in ITEM_CONTROLS):
            raise OrderRefused(f"order {order.control} has no accession number "
                               f"(the source of {self.accessionColumn} in dicom.sql)", 101)
        values = {name: value for name, value in order.values.items() if name in self.table.c}
        matching = key == accession
        status = [] if self.statusColumn is None else [self.table.c[self.statusColumn]]
        existing = connection.execute(select(key, *status).where(matching).limit(1)).first()
        if order.control in DELETE_CONTROLS or (order.control == STATUS_CONTROL
                                                and order.orderStatus in DELETE_STATUSES):
            if existing is None:
                return Applied(order.control, accession, "absent")
            connection.execute(delete(self.table).where(matching))
            return Applied(order.control, accession, "deleted")
        if order.control == STATUS_CONTROL:
            return self._changeStatus(connection, order, accession, matching, existing)
        if existing is None:
            if order.control in UPDATE_CONTROLS:
                raise OrderRefused(f"order {order.control}: no worklist item with accession number {accession}",
                                   204)
            if status and not values.get(self.statusColumn):
                values[self.statusColumn] = SCHEDULED
            connection.execute(insert(self.table).values(values))
            return Applied(order.control, accession, "inserted")
        kept = {name: value for name, value in values.items()
                if name not in order.generated and name not in order.absent}  # an XO without PID keeps the name
        if (status and order.control in INSERT_CONTROLS and existing[1] == DISCONTINUED
                and not kept.get(self.statusColumn)):
            kept[self.statusColumn] = SCHEDULED  # ordered again
        connection.execute(update(self.table).where(matching).values(kept))
        return Applied(order.control, accession, "updated" if order.control in UPDATE_CONTROLS else "replaced")

    def _changeStatus(self, connection, order, accession, matching, existing):
        """In the writer: the ``Applied`` of an SC that deletes nothing."""
        if existing is None:
            return Applied(order.control, accession, "absent")
        status = STEP_STATUSES.get(order.orderStatus)
        if status is None or self.statusColumn is None:
            return Applied(order.control, accession, f"unchanged (ORC-5 {order.orderStatus!r})")
        current = existing[1]
        if current in FINISHED:  # an SC never moves an item off COMPLETED or DISCONTINUED
            return Applied(order.control, accession, f"kept {current} (ORC-5 {order.orderStatus!r})")
        connection.execute(update(self.table).where(matching).values({self.statusColumn: status}))
        return Applied(order.control, accession, f"marked {status}")

    def markPerformed(self, connection, accessions, status, changeable=None, keep=()):
        """In the writer: set the Scheduled Procedure Step Status of the
        items of ``accessions`` to ``status``, or, given ``changeable``, of
        those whose current status it is true of, never of those in
        ``keep``; a ``Marked`` of the accession numbers of the items there
        are (none without a status column)."""
        if self.statusColumn is None or self.accessionColumn is None or not accessions:
            return Marked([], {})
        key, column = self.table.c[self.accessionColumn], self.table.c[self.statusColumn]
        found = dict(connection.execute(select(key, column).where(key.in_(accessions))).all())
        changed = sorted(accession for accession, current in found.items()
                         if accession not in keep and (changeable is None or changeable(current)))
        if changed:
            connection.execute(update(self.table).where(key.in_(changed)).values({self.statusColumn: status}))
        return Marked(changed, {accession: current for accession, current in sorted(found.items())
                                if accession not in changed})

    def notTheirs(self, connection, identities):
        """In the writer: ``{accession number: why}`` of the items that
        ``identities`` (``{accession number: {tag: value}}``, the scheduled
        steps a performed step names) name by their accession number but
        that are not theirs: an ``IDENTIFYING`` value (Patient ID ...)
        both have differs (none without a status column: nothing is
        marked)."""
        if self.statusColumn is None or self.accessionColumn is None or not identities:
            return {}
        tags = list(self.identifyingColumns)
        key = self.table.c[self.accessionColumn]
        rows = connection.execute(select(key, *(self.table.c[self.identifyingColumns[tag]] for tag in tags))
                                  .where(key.in_(sorted(identities)))).all()
        foreign = {}
        for accession, *values in rows:
            given = identities[accession]
            differing = [f"{IDENTIFYING[tag]} {value.strip()}, not {given[tag]}" for tag, value in zip(tags, values)
                         if value and value.strip() and given.get(tag) and value.strip() != given[tag]]
            if differing:
                foreign[accession] = ", ".join(differing)
        return foreign

    def lookup(self, accessionNumber):
        """In the calling thread: ``{tag: value}`` of the non-empty columns of
        the item with this accession number, or None when there is none."""
        if self.accessionColumn is None or not accessionNumber:
            return None
        key = self.table.c[self.accessionColumn]
        with self.index.engine.connect() as connection:
            row = connection.execute(select(self.table).where(key == accessionNumber).limit(1)).first()
        if row is None:
            return None
        return {self.tagOf[name]: value for name, value in row._mapping.items()
                if name in self.tagOf and value}
