"""Control commands on dicom.ini (manual appendix 6, configuration options):
``get_param``/``get_ini_param``, ``get_ini_num``, ``get_ini``, ``put_param``,
``delete_param``, ``read_ini``.

They read and edit the server's own ``DicomIni`` (its main section,
``[sscscp]``); ``put_param`` and ``delete_param`` also write dicom.ini at
once, comments and order kept.  Most settings are read when the server
starts, so a changed value takes effect at the next start, and the
commands say so.  These are live, used the next time they are needed:

- ``UIDPrefix``: the root of the UIDs ``genuid``, ``changeuid`` and the
  converters make from then on (``put_param`` refuses one that is no UID
  root of at most 53 characters);
- ``LuaAllowUnsafe``, ``LuaMaxInstructions``: read each time a Lua
  converter runs;
- ``WebReadOnly``, ``WEBPush`` (and the ``[webdefaults]`` and scripted page
  sections, which these commands do not edit): read by each web request;
- the import converter lines, and the export lines while their numbers
  stay (``converterlines``): used for the objects stored from then on.

Getting a key that is absent gives an empty value, and an index past the
last entry no output, as with Conquest (scripts loop until it).  For a
sandboxed Lua script (``servercommand``) and a scripted web page's command
lines (``ControlContext.secretsHiddenFrom``) the getters leave dicom.ini's
secrets out (``pacscore.config.secrets``): ``get_param`` of one is refused.
"""


from pacscore.config.loader import uidPrefixError
from pacscore.config.secrets import isSecret, publicItems
from pacscore.control.arguments import ControlCommand, fields, number
from pacscore.control.configfiles import reload, saveOrRestore, snapshot
from pacscore.control.context import CommandError, checkUTF8, formatted
from pacscore.control.converterlines import isConverterKey, saveAndUse, use
from pacscore.db.drivers import redacted
from pacscore.converters.rules import loadRules

ENTRY_FORMAT = "%s = %s"


def _applyUIDPrefix(archive, value):
    archive.converterServices.uidMap.prefix = value


def _checkUIDPrefix(value):
    """CommandError unless ``value`` can start generated UIDs."""
    error = uidPrefixError(value)
    if error is not None:
        raise CommandError(error)


READ_WHEN_USED = ("LuaAllowUnsafe", "LuaMaxInstructions", "WebReadOnly", "WEBPush")
APPLIED_AT_ONCE = {"UIDPrefix": _applyUIDPrefix}
LIVE_KEYS = {key.lower() for key in (*READ_WHEN_USED, *APPLIED_AT_ONCE)}


def applyLive(archive, key, value):
    """Give the running server ``key``'s new ``value`` (None: deleted);
    False when the key only takes effect at the next start."""
    for name, apply in APPLIED_AT_ONCE.items():
        if name.lower() == key.lower():
            apply(archive, value)
    return key.lower() in LIVE_KEYS


def _restartNote(keys):
    return f"takes effect when the server restarts: {', '.join(keys)}"


class GetParam(ControlCommand):
    """``get_param:name,fmt`` (and its twin ``get_ini_param``)."""

    name = "get_param"
    usage = "--get_param:name,fmt  Read any parameter from DICOM.INI"
    readOnly = True

    def run(self, arguments, context):
        key, fmt = fields(arguments, 2)
        if not key:
            raise CommandError(f"usage: {self.usage}")
        value = context.archive.configuration.ini.get(key, "")
        if context.secretsHiddenFrom:
            if isSecret(key):
                raise CommandError(f"{key} is a secret: {context.secretsHiddenFrom} cannot read it")
            value = redacted(value)
        return formatted(fmt, value)


class GetIniNum(ControlCommand):
    name = "get_ini_num"
    usage = "--get_ini_num:index,fmt  List any entry from DICOM.INI"
    readOnly = True

    def run(self, arguments, context):
        index, fmt = fields(arguments, 2)
        items = _items(context)
        position = number(index, "index")
        return formatted(fmt or ENTRY_FORMAT, *items[position]) if position < len(items) else ""


class GetIni(ControlCommand):
    name = "get_ini"
    usage = "--get_ini:fmt  List all entries from DICOM.INI"
    readOnly = True

    def run(self, arguments, context):
        return "\n".join(formatted(arguments or ENTRY_FORMAT, key, value)
                         for key, value in _items(context))


def _items(context):
    """dicom.ini's main section as its getters show it to ``context``'s caller."""
    items = context.archive.configuration.ini.items()
    return publicItems(items) if context.secretsHiddenFrom else items


def _applyAndSave(archive, key, value, before):
    """Apply a changed dicom.ini key (``value`` None: deleted) to the running
    archive and save the file; Deferred of "" or, for a key that needs a
    restart, the note saying so.  When the save fails, dicom.ini in memory
    is ``before`` again and its value of ``key`` applied: nothing changed.
    The converter lines are parsed first (``converterlines``)."""
    if isConverterKey(key):
        return saveAndUse(archive, key, before).addCallback(lambda restart: _restartNote(restart) if restart else "")
    ini = archive.configuration.ini
    live = applyLive(archive, key, value)
    d = saveOrRestore(archive, ini, before, lambda: applyLive(archive, key, ini.get(key)))
    d.addCallback(lambda _: "" if live else _restartNote([key]))
    return d


class PutParam(ControlCommand):
    name = "put_param"
    usage = "--put_param:name,value  Write any parameter to DICOM.INI"

    def run(self, arguments, context):
        key, value = fields(arguments, 2)
        value = value.strip()
        if not key:
            raise CommandError(f"usage: {self.usage}")
        checkUTF8(key, value)
        if key.lower() == "uidprefix":
            _checkUIDPrefix(value)
        archive = context.archive
        ini = archive.configuration.ini
        before = snapshot(ini)
        try:
            ini.set(key, value)
        except ValueError as e:
            raise CommandError(str(e)) from e
        return _applyAndSave(archive, key, value, before)


class DeleteParam(ControlCommand):
    name = "delete_param"
    usage = "--delete_param:name  Delete any parameter from DICOM.INI"

    def run(self, arguments, context):
        key = arguments.strip()
        archive = context.archive
        ini = archive.configuration.ini
        if not ini.has(key):
            raise CommandError(f"{key!r} is not in {ini.path}")
        before = snapshot(ini)
        ini.delete(key)
        return _applyAndSave(archive, key, None, before)


class ReadIni(ControlCommand):
    """Reports the keys that changed; the live ones are applied."""

    name = "read_ini"
    usage = "--read_ini:  Re-read all parameters from DICOM.INI"

    def run(self, arguments, context):
        archive = context.archive
        ini = archive.configuration.ini
        before = _keyed(ini)

        def compare(rules):
            after = _keyed(ini)
            changed = [after.get(k, before.get(k))[0] for k in sorted(set(before) | set(after))
                       if before.get(k) != after.get(k)]
            waiting = use(archive, rules, changed)
            restart = [key for key in changed if key in waiting
                       or not (isConverterKey(key) or applyLive(archive, key, ini.get(key)))]
            lines = [f"{len(changed)} parameter(s) changed in {ini.path}"]
            return "\n".join(lines + ([_restartNote(restart)] if restart else []))

        # converter lines that do not parse refuse the file: the server would not start with it
        return reload(archive, ini, check=lambda fresh: loadRules(fresh, archive.commands)).addCallback(compare)


def _keyed(ini):
    """``{lower-case key: (key, value)}`` of the main section (first of equal keys wins)."""
    result = {}
    for key, value in ini.items():
        result.setdefault(key.lower(), (key, value))
    return result
