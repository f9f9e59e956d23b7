"""Control commands on dicom.ini (manual appendix 6, configuration options):
``get_param``/``get_ini_param``, ``get_ini_num``, ``get_ini``, ``put_param``,
``delete_param``, ``read_ini``.

They read and edit the server's own ``DicomIni`` (its main section,
``[sscscp]``); ``put_param`` and ``delete_param`` also change the one key in
dicom.ini at once, in the file as it is on disk (its other lines, hand
edits too, as they are).  A value the server could not use, at once or at
its next start (``pacscore.config.settings``), is refused by ``put_param``,
``delete_param`` and ``read_ini``, which then change neither the file nor the running
configuration.  ``put_param``, ``delete_param`` and ``read_ini`` run one
at a time, in the order sent, each from dicom.ini as the one before left
it (a command sent meanwhile waits its turn).  Most settings are read when
the server starts, so a changed value takes effect at the next start, and
the commands say so.  These are live, used the next time they are needed:

- ``UIDPrefix``: the root of the UIDs ``genuid``, ``changeuid`` and the
  converters make from then on;
- ``ControlSecret``: the secret the control port asks of the next command
  (one bound to anything but loopback cannot be left without);
- ``LuaAllowUnsafe``, ``LuaMaxInstructions``: read each time a Lua
  converter runs, ``LuaFileFolder`` at each file a sandboxed script opens;
- ``ImportExportDragAndDrop``: read by each ``addimagefile``;
- ``WebReadOnly``, ``WebWriters``, ``WEBPush``, ``DICOMwebStore``,
  ``DICOMwebMaxParts``, ``QIDOMaxResults`` (and the ``[webdefaults]`` and scripted page sections,
  which these commands do not edit): read by each web request;
- the import converter lines, and the export lines while their numbers
  stay (``converterlines``): used for the objects stored from then on;
- the ``[DICOMTLSNodes]`` section, which ``read_ini`` reads again (its
  node certificates too): used by the associations opened from then on,
  a line whose AE acrnema.map has no entry for warned of;
- the ``[DICOMwebServers]`` section, which ``read_ini`` reads again: used
  by the export forwards and gets started from then on, as by the moves.

Getting a key that is absent gives an empty value, and an index past the
last entry no output, as with Conquest (scripts loop until it).  For a
sandboxed Lua script (``servercommand``) and a scripted web page's command
lines (``ControlContext.secretsHiddenFrom``) the getters leave dicom.ini's
secrets out (``pacscore.config.secrets``): ``get_param`` of one is refused.
"""

import collections
import dataclasses
import functools

from twisted.internet import defer

from pacscore.config.errors import ConfigError
from pacscore.config.ini import MAIN_SECTION
from pacscore.config.loader import TLS_NODES, tlsNodes
from pacscore.config.secrets import isSecret, publicItems, publicValue
from pacscore.config.settings import checkSettings
from pacscore.control.arguments import ControlCommand, fields, number
from pacscore.control.configfiles import reload, saveEdit, snapshot
from pacscore.control.context import CommandError, checkUTF8, formatted
from pacscore.control.converterlines import isConverterKey, use
from pacscore.control.endpoint import clientTarget, controlDescription, secretProblem
from pacscore.export.stow import SECTION as WEB_SERVERS, dicomWebServers
from pacscore.db.drivers import redacted
from pacscore.converters.rules import loadRules

ENTRY_FORMAT = "%s = %s"


def _applyUIDPrefix(archive, value):
    archive.converterServices.uidMap.prefix = value


def _applyControlSecret(archive, value):
    if archive.controlPort is not None:
        archive.controlPort.secret = value or None


READ_WHEN_USED = ("LuaAllowUnsafe", "LuaMaxInstructions", "LuaFileFolder", "ImportExportDragAndDrop", "WebReadOnly",
                  "WebWriters", "WEBPush", "DICOMwebStore", "DICOMwebMaxParts", "QIDOMaxResults")
APPLIED_AT_ONCE = {"UIDPrefix": _applyUIDPrefix, "ControlSecret": _applyControlSecret}
LIVE_KEYS = {key.lower() for key in (*READ_WHEN_USED, *APPLIED_AT_ONCE)}


def applyLive(archive, key, value):
    """Give the running server ``key``'s new ``value`` (None: deleted);
    False when the key only takes effect at the next start."""
    for name, apply in APPLIED_AT_ONCE.items():
        if name.lower() == key.lower():
            apply(archive, value)
    return key.lower() in LIVE_KEYS


def _restartNote(archive, keys):
    """The answer naming ``keys``, which take effect at the next start,
    and, when ControlEndpoint is one, how ``dgate`` reaches the server
    until then (``_controlMoved``)."""
    note = f"takes effect when the server restarts: {', '.join(keys)}"
    if any(key.lower() == "controlendpoint" for key in keys):
        note += _controlMoved(archive)
    return note


def _controlMoved(archive):
    """Where ``dgate`` of the working folder, which reads ControlEndpoint
    from dicom.ini, still reaches the server once ControlEndpoint changed
    (it serves the control port it started with); "" when it does not
    move (no control port, ``--control`` gave it, an endpoint at which
    dgate connects where it did: ``interface=127.0.0.1`` with a
    ``backlog=`` added)."""
    port = archive.controlPort
    if port is None or port.endpoint is None or archive.controlOption is not None:
        return ""
    configuration = archive.configuration
    try:
        target = clientTarget(port.endpoint, configuration.workdir)
    except ValueError:  # a port dgate cannot be given (tcp:0)
        return "; until then dgate in this folder, which reads the new one, cannot reach this server"
    if target == _dgateTarget(controlDescription(configuration.ini), configuration.workdir):
        return ""
    if target[0] == "unix":
        return (f"; until then dgate in this folder, which reads the new one, cannot reach this server "
                f"(its control port is the UNIX socket {target[1]})")
    _, host, number = target
    return (f"; until then dgate in this folder, which reads the new one, reaches this server only with "
            f"-q{host} -p{number}")


def _dgateTarget(description, workdir):
    """Where dgate in ``workdir`` connects for the control port
    ``description`` (``clientTarget``), None when it has none (off, or a
    port it cannot be given)."""
    if description is None:
        return None
    try:
        return clientTarget(description, workdir)
    except ValueError:
        return None


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


def _usable(archive, refused, ini):
    """The converter lines (a ``ConverterRules``), ``[DICOMTLSNodes]``
    (``{AE: ClientTLS}``) and ``[DICOMwebServers]`` (``{NAME:
    DicomWebServer}``) of ``ini``, dicom.ini as a command would leave it;
    CommandError saying ``refused`` when the server could not use it: not
    start with it (a value it cannot use, ``pacscore.config.settings``, a
    converter line that does not parse, a ``[DICOMTLSNodes]`` line
    ``tlsNodes`` refuses or a ``[DICOMwebServers]`` URL ``dicomWebServers``
    refuses), or, its control port bound to anything but loopback, be left
    without ControlSecret, or start its control port, ControlEndpoint
    unless ``--control`` overrides it, bound so without one."""
    configuration = dataclasses.replace(archive.configuration, ini=ini)
    try:
        checkSettings(configuration)
        rules = loadRules(ini, archive.commands)
        nodes = tlsNodes(ini, configuration.iniPath, configuration.workdir)
        servers = dicomWebServers(configuration)
    except ConfigError as e:
        raise CommandError(f"{refused}: the server would not start with it: {e}") from None
    secret = ini.get("ControlSecret", "")
    port = archive.controlPort
    if port is not None and port.requireSecret and not secret:
        raise CommandError(f"{refused}: the control port is not bound to loopback, it needs a ControlSecret")
    description = controlDescription(ini)
    if archive.controlOption is None and description is not None:  # the next start serves ControlEndpoint
        problem = secretProblem(description, secret)
        if problem is not None:
            raise CommandError(f"{refused}: the server would not start with it: {problem}")
    return rules, nodes, servers


def _applied(archive, rules, keys):
    """Give the running archive the changes of ``keys`` in its dicom.ini,
    whose converter lines are ``rules``; the keys that wait for the next
    start."""
    ini = archive.configuration.ini
    waiting = use(archive, rules, keys)
    return [key for key in keys if key in waiting
            or not (isConverterKey(key) or applyLive(archive, key, ini.get(key)))]


def _applyAndSave(archive, key, edit):
    """Make ``edit``, the change of a dicom.ini key, in the file as it is on
    disk, then in dicom.ini in memory, and apply it to the running archive;
    a Deferred of "" or, for a key that needs a restart, the note saying
    so.  dicom.ini in memory, and so the running archive, only takes the
    change once the file on disk, checked (``_usable``), is written:
    a change refused or not saved changes nothing."""
    refused = f"{key} not changed"
    ini = archive.configuration.ini
    edited = snapshot(ini)  # dicom.ini in memory as it will be
    try:
        edit(edited)
    except ValueError as e:
        raise CommandError(str(e)) from e

    def check(onDisk):
        rules = None
        if isConverterKey(key):  # the lines in use are those of dicom.ini in memory, edited
            try:
                rules = loadRules(edited, archive.commands)
            except ConfigError as e:  # its lines are not those of the file: named by key
                raise CommandError(f"{refused}: {e.message}") from None
        _usable(archive, refused, onDisk)
        return rules

    def apply(rules):
        edit(ini)
        restart = _applied(archive, rules, [key])
        return _restartNote(archive, restart) if restart else ""

    return saveEdit(archive, ini, edit, check).addCallback(apply)


_changes = collections.defaultdict(defer.DeferredLock)
"""Per dicom.ini (its path): the commands changing it run one at a time,
in the order sent, so that each starts from dicom.ini as the one before
left it, checked, saved and in use."""


def _inTurn(archive, change, *args):
    """``change(archive, *args)`` once the commands changing dicom.ini sent
    before are done; a Deferred of what it returns."""
    return _changes[archive.configuration.ini.path].run(change, archive, *args)


class PutParam(ControlCommand):
    name = "put_param"
    usage = "--put_param:name,value  Write any parameter to DICOM.INI"

    def run(self, arguments, context):
        key, value = fields(arguments, 2)
        value = value.strip()
        if not key:
            raise CommandError(f"usage: {self.usage}")
        checkUTF8(key, value)
        return _inTurn(context.archive, _applyAndSave, key, lambda ini: ini.set(key, value))

    def loggedArguments(self, arguments):
        """``arguments`` with the value hidden as ``get_ini`` hides it from
        those who may not see secrets: the server log is read more widely
        than dicom.ini (``ControlSecret``, the SQL server's ``Password``)."""
        key, value = fields(arguments, 2)
        return f"{key},{publicValue(key, value)}" if value else arguments


class DeleteParam(ControlCommand):
    name = "delete_param"
    usage = "--delete_param:name  Delete any parameter from DICOM.INI"

    def run(self, arguments, context):
        return _inTurn(context.archive, _delete, arguments.strip())


def _delete(archive, key):
    ini = archive.configuration.ini
    if not ini.has(key):
        raise CommandError(f"{key!r} is not in {ini.path}")
    return _applyAndSave(archive, key, lambda ini: ini.delete(key))


class ReadIni(ControlCommand):
    """Reports the keys that changed; the live ones are applied."""

    name = "read_ini"
    usage = "--read_ini:  Re-read all parameters from DICOM.INI"

    def run(self, arguments, context):
        return _inTurn(context.archive, _readIni)


def _readIni(archive):
    configuration = archive.configuration
    ini = configuration.ini
    sections = (TLS_NODES, WEB_SERVERS)  # read again and used at once
    before = {section: _keyed(ini, section) for section in (MAIN_SECTION,) + sections}

    def compare(checked):
        rules, nodes, servers = checked
        configuration.acrNemaMap.tlsNodes = nodes
        if archive.exportRunner is not None:
            archive.exportRunner.forwarder.dicomWebServers = servers
        configuration.warnOfMistypedTLSNodes()
        configuration.warnOfRepeatedWebServers()
        configuration.warnOfRepeatedKeys()
        changed = _changed(before[MAIN_SECTION], _keyed(ini))
        atOnce = [f"[{section}] {key}" for section in sections
                  for key in _changed(before[section], _keyed(ini, section))]
        restart = _applied(archive, rules, changed)
        lines = [f"{len(changed) + len(atOnce)} parameter(s) changed in {ini.path}"]
        if atOnce:
            lines.append(f"applied at once: {', '.join(atOnce)}")
        return "\n".join(lines + ([_restartNote(archive, restart)] if restart else []))

    check = functools.partial(_usable, archive, f"{ini.path} not read")
    return reload(archive, ini, check).addCallback(compare)


def _keyed(ini, section=MAIN_SECTION):
    """``{lower-case key: (key, value)}`` of a section (first of equal keys wins)."""
    result = {}
    for key, value in ini.items(section):
        result.setdefault(key.lower(), (key, value))
    return result


def _changed(before, after):
    """The keys (as spelled) whose values differ between two ``_keyed``."""
    return [after.get(k, before.get(k))[0] for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
