"""Control commands on dgatesop.lst, what incoming associations may use
(manual appendix 6): ``get_``/``put_``/``delete_`` + ``sop``, ``transfer``,
``application``, ``localae``, ``remoteae``.

Indexes count the enabled entries of one kind (``sop`` also counts
``abstract`` lines), in file order.  ``put_KIND:index,UID,name`` replaces
entry ``index`` or adds one when ``index`` is their number; for LocalAE
and RemoteAE entries the UID is the AE title.  ``put`` and ``delete``
write dgatesop.lst at once (comments kept) and take effect for the next
association: the DICOM service's acceptor policy is rebuilt.  An entry
is printed with ``fmt`` taking its UID (AE title) and name (default
``%s %s``); an index past the last entry prints nothing.
"""

from dataclasses import replace

from pacscore.config.soplist import SopEntry
from pacscore.control.arguments import ControlCommand, fields, number
from pacscore.control.configfiles import saveOrRestore, snapshot
from pacscore.control.context import CommandError, checkUTF8, formatted

ENTRY_FORMAT = "%s %s"
KINDS = {"sop": ("sop", "abstract"), "transfer": ("transfer",), "application": ("application",),
         "localae": ("localae",), "remoteae": ("remoteae",)}
USAGES = {
    "get_sop": "--get_sop:index,fmt  List any accepted service class UID",
    "put_sop": "--put_sop:index,UID,name  Write/add accepted service class UID",
    "delete_sop": "--delete_sop:index  Delete accepted service class UID",
    "get_transfer": "--get_transfer:index,fmt  List any accepted transfer syntax",
    "put_transfer": "--put_transfer:index,UID,name  Write/add accepted transfer syntax",
    "delete_transfer": "--delete_transfer:index  Delete accepted transfer syntax",
    "get_application": "--get_application:index,fmt  List any accepted application UID",
    "put_application": "--put_application:index,UID,name  Write/add accepted application UID",
    "delete_application": "--delete_application:index  Delete accepted application UID",
    "get_localae": "--get_localae:index,fmt  List any accepted local AE title",
    "put_localae": "--put_localae:index,AE,name  Write/add accepted local AE title",
    "delete_localae": "--delete_localae:index  Delete accepted local AE title",
    "get_remoteae": "--get_remoteae:index,fmt  List any accepted remote AE title",
    "put_remoteae": "--put_remoteae:index,AE,name  Write/add accepted remote AE title",
    "delete_remoteae": "--delete_remoteae:index  Delete accepted remote AE title",
}


class _EntryCommand(ControlCommand):
    """A command on the entries of one ``kind`` (a key of KINDS)."""

    verb = ""

    def __init__(self, kind):
        name = f"{self.verb}_{kind}"
        super().__init__(name, USAGES[name])
        self.kind = kind

    def positions(self, sopList):
        """Positions among all entries of this kind's enabled ones."""
        return [i for i, entry in enumerate(sopList.entries)
                if entry.enabled and entry.kind in KINDS[self.kind]]

    def saved(self, archive, before):
        """Write dgatesop.lst, edited from ``before``, and apply it to the
        next associations; when the write fails, it is ``before`` again."""
        archive.refreshAcceptorPolicy()
        d = saveOrRestore(archive, archive.configuration.sopList, before, archive.refreshAcceptorPolicy)
        return d.addCallback(lambda _: "")


class GetEntry(_EntryCommand):
    verb = "get"
    readOnly = True

    def run(self, arguments, context):
        index, fmt = fields(arguments, 2)
        sopList = context.archive.configuration.sopList
        positions = self.positions(sopList)
        position = number(index, "index")
        if position >= len(positions):
            return ""
        entry = sopList.entries[positions[position]]
        return formatted(fmt or ENTRY_FORMAT, entry.uid, entry.name)


class PutEntry(_EntryCommand):
    verb = "put"

    def run(self, arguments, context):
        index, uid, name = (field.strip() for field in fields(arguments, 3))
        if not (uid and name):
            raise CommandError(f"usage: {self.usage}")
        checkUTF8(uid, name)
        sopList = context.archive.configuration.sopList
        before = snapshot(sopList)
        positions = self.positions(sopList)
        position = number(index, "index")
        if position > len(positions):
            raise CommandError(f"no {self.kind} entry {position}: there are {len(positions)}")
        try:
            if position == len(positions):
                sopList.put(len(sopList.entries), SopEntry(name, uid, self.kind))
            else:
                old = sopList.entries[positions[position]]
                sopList.put(positions[position], replace(old, uid=uid, name=name))
        except ValueError as e:
            raise CommandError(str(e)) from e
        return self.saved(context.archive, before)


class DeleteEntry(_EntryCommand):
    verb = "delete"

    def run(self, arguments, context):
        sopList = context.archive.configuration.sopList
        positions = self.positions(sopList)
        position = number(arguments, "index")
        if position >= len(positions):
            raise CommandError(f"no {self.kind} entry {position}: there are {len(positions)}")
        before = snapshot(sopList)
        sopList.delete(positions[position])
        return self.saved(context.archive, before)
