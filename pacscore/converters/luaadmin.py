"""Conquest's Lua functions that reach the server's database, archive and
settings, for ``LuaApi``:

- ``sql(statement)``: runs any SQL statement on the index database, in
  its writer as the control command ``deleterecord`` does (the index's
  names quoted, its cached rows re-read); 1, or nil and the reason;
- ``dicomdelete(query)``: deletes from the archive (files and index) the
  images that all the keys of the object ``query`` match, as Conquest's
  RemoveFromPACS (an image-level query); a query without a value, or
  with a value the index does not hold (which would widen it), deletes
  nothing; an empty array as
  Conquest's, with the reason when nothing was deleted;
- ``get_sqldef(level, n)``: entry n (from 0) of dicom.sql's table at
  ``level`` (0 patient, 1 study, 2 series, 3 image, 4 worklist): group,
  element, column, length, SQL type and DICOM type; nothing past the last,
  nor for a level or n that is no number (nil);
- ``heapinfo()``: the memory of the script's Lua state and of the server;
- ``Global.Key = value``: for a dicom.ini key, ``put_param`` then
  ``read_ini``, as Conquest's; ``Global.DebugLevel`` also sets the debug
  level at once (``debuglevel``).

``sql``, ``dicomdelete`` and setting ``Global`` change the archive or its
settings: a sandboxed script is refused them, as the control commands
that change something (``LuaAllowUnsafe = 1`` allows them).
"""

from pacscore.config.dicomsql import TABLES
from pacscore.converters.servercommands import ServerCommandError
from pacscore.debuglog import memoryInUse
from pacscore.dicom.identifiers import datasetKeys, tagName

class LuaAdminError(ValueError):
    """A script used one of these functions wrongly, or was refused it."""


class AdminFunctions:
    """Mixed into ``LuaApi``: uses its ``context``, ``runtime``, ``unsafe``
    and ``_serverCommands``."""

    def _allowed(self, name):
        if not self.unsafe:
            raise LuaAdminError(f"{name}: sandboxed Lua scripts change no data nor setting "
                                "(LuaAllowUnsafe = 1 allows it)")

    def sql(self, statement):
        """Conquest's ``sql``: 1, or nil and the reason the statement failed."""
        self._allowed("sql")
        index = self.context.services.index
        if index is None:
            raise LuaAdminError("sql: there is no index database")
        try:
            self._serverCommands("sql").sql(index, str(statement))
        except ServerCommandError as e:
            return None, str(e)
        return 1

    def dicomdelete(self, query):
        """Conquest's ``dicomdelete``: see the module docstring."""
        self._allowed("dicomdelete")
        dataset = getattr(query, "dataset", None)
        if dataset is None:
            raise LuaAdminError("dicomdelete wants a DICOM object (newdicomobject()) for its query")
        keys = datasetKeys(dataset)
        deleted = self.newdicomarray()
        if not any(key.value for key in keys):
            return deleted, "dicomdelete: the query has no value to select images by"
        indexed = self.context.services.configuration.layout.indexedTags()
        unheld = [key for key in keys if key.value and key.tag not in indexed]
        if unheld:
            return deleted, f"dicomdelete: the index holds no {tagName(unheld[0].tag)}: the query would select more"
        try:
            removed = self._serverCommands("dicomdelete").delete(keys)
        except ServerCommandError as e:
            return deleted, str(e)
        if not removed:
            return deleted, "dicomdelete: no stored object matches the query"
        return deleted

    def get_sqldef(self, level=None, number=None):
        """Conquest's ``get_sqldef``: see the module docstring."""
        layout = getattr(self.context.services.configuration, "layout", None)
        if layout is None or not all(isinstance(n, (int, float)) for n in (level, number)) \
                or not 0 <= level < len(TABLES):
            return ()
        columns = getattr(layout, TABLES[int(level)])
        if not 0 <= number < len(columns):
            return ()
        column = columns[int(number)]
        return column.group, column.element, column.name, column.length, column.sqlType, column.dicomType

    def heapinfo(self):
        """Conquest's ``heapinfo``: text on the memory in use."""
        return (f"Lua state: {self.runtime.lua.get_memory_used()} bytes; "
                f"server: {memoryInUse()} resident")

    def setglobal(self, key, value):
        """``Global.Key = value``: see the module docstring."""
        key = str(key)
        ini = getattr(self.context.services.configuration, "ini", None)
        if ini is None or not ini.has(key):
            return
        self._allowed(f"Global.{key}")
        commands = self._serverCommands(f"Global.{key}")
        try:
            commands.fromThread(f"put_param:{key},{value}", sandboxed=False)
            commands.fromThread("read_ini:", sandboxed=False)
            if key.lower() == "debuglevel":
                commands.fromThread(f"debuglevel:{value}", sandboxed=False)
        except ServerCommandError as e:
            raise LuaAdminError(f"Global.{key}: {e}") from None
