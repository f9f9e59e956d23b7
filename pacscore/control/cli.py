"""The ``dgate`` command line, with Conquest's syntax (manual appendix 6).

    dgate [-pPORT] [-qHOST] [-wDIR] --command:arguments   ask the running server
    dgate [-v] [-wDIR] -i|-r                              offline: initialise / regenerate the index
    dgate -?                                              the options and every command
    dgate                    (run by a web server, as a CGI script: see cgigateway)

A ``--command`` goes to the control port of the server whose ``dicom.ini``
is in the working folder (``ControlEndpoint``, ``ControlSecret``; -p and -q
override the port and host): OUTPUT lines are printed to stdout, PROGRESS
lines to stderr; the exit status is 0 on OK, 1 on ERROR or when no server
answers, 2 for an unknown command or a bad command line. The offline
options work on the working folder's configuration (else the packaged
defaults) without a server; -i and -r refuse to run while that folder's
server runs (``pacscore.control.liveserver``).
"""

import os
import sys

from twisted.internet import error, task
from twisted.logger import globalLogBeginner, textFileLogObserver

from pacscore.config.defaults import DEFAULT_TCP_PORT, INI_NAME, defaultConfigDir
from pacscore.config.errors import ConfigError
from pacscore.config.ini import DicomIni
from pacscore.control.cgigateway import isCGIRequest, runCGI
from pacscore.control.client import (ClientFailed, DicomPortAnswered, NoAnswer, TLSFailed, controlPortHint,
                                     sendCommand)
from pacscore.control.endpoint import DEFAULT_ENDPOINT, clientEndpoint, controlDescription, portNumber

USAGE = """\
DGATE: pacs DICOM archive utility (Conquest dgate syntax)

Usage:
(1) dgate [-v] [-wDIR] [-i|-r|-d|-m|-k|-f?file]
    -wDIR   Set the working folder (dicom.ini, acrnema.map, ... and relative paths)
    -i      Initialise the index tables (patients, studies, series, images)
    -r      Initialise the index tables and regenerate them from the files on the MAG devices
    -d      List the MAG and MIRROR devices
    -m      List the AE map (acrnema.map)
    -k      List the database definition (dicom.sql)
    -f?file Print the SOP Instance UID of a DICOM file
    -jdFILE / -jc#FILE / -j*##FILE  Uncompress FILE / compress it as j# / convert it to code ## (in place)
    -ndFILE / -nc#FILE              NKI decompress FILE / NKI compress it in mode # (in place)
    -v      Report to stdout
    -?      Show this help

(2) dgate [-pPORT] [-qHOST] [-wDIR] --command:arguments
    Send a command to the running server (its control port: ControlEndpoint of the working
    folder's dicom.ini, ControlSecret sent when set; -p and -q override port and host)
    -av[DEVICE]  Verify the mirror disk of DEVICE (default: all): --verifymirrordisk:DEVICE
    -at[DEVICE]  Test read all files of DEVICE (default: MAG0): --testimages:DEVICE
    -amFROM,TO   Move the data of device FROM to device TO: --movedatatodevice:TO,FROM
    -aeFROM,TO   Rename device FROM to TO in the database: --renamedevice:FROM,TO
    -arDEVICE    Regenerate the database of one device: --regendev:DEVICE
    -frDEVICE,DIR  Regenerate one folder of a device: --regendir:DEVICE,DIR
    -fefile      Enter file in the database: --regenfile:file
    -fdfile      Delete file from the database only: --deleteimagefromdb:file
    -fzfile      Delete (zap) file from the server: --deleteimagefile:file
    -fpID / -ftUID / -fsUID / -fiUID  Delete patient / study / series / image from the database only
    -zID         Delete (zap) patient: --deletepatient:ID
    -faFILE[,ID] Add file to the server, optionally as patient ID: --addimagefile:FILE,ID
    -fcPATID,file  Change the patient ID of a stored file: --modifypatid:PATID,file
    -fkPATID,file  Copy a stored file to patient PATID: --copypatid:PATID,file
    -ff#         Delete old patients until # MB are free: --makespace:#
    -fu          Make a new UID: --genuid:
    -gAE,DATE    Fetch what AE holds of the studies of DATE and this server lacks: --grabimagesfromserver:AE,DATE
"""

# Conquest's options that stand for a --command: the rest of the option completes it.
SHORTCUTS = (
    ("-av", "--verifymirrordisk:"), ("-at", "--testimages:"), ("-ae", "--renamedevice:"), ("-ar", "--regendev:"),
    ("-fr", "--regendir:"), ("-fe", "--regenfile:"), ("-fd", "--deleteimagefromdb:"), ("-fz", "--deleteimagefile:"),
    ("-z", "--deletepatient:"), ("-fa", "--addimagefile:"), ("-fc", "--modifypatid:"), ("-fk", "--copypatid:"),
    ("-ff", "--makespace:"), ("-fu", "--genuid:"), ("-g", "--grabimagesfromserver:"),
    ("-fp", "--deletepatientfromdb:"), ("-ft", "--deletestudyfromdb:"), ("-fs", "--deleteseriesfromdb:"),
    ("-fi", "--deletesopfromdb:,,,"))


class UsageError(Exception):
    """Bad command line."""


def usage(registry=None):
    """USAGE followed by the usage line of every installed control command."""
    if registry is None:
        from pacscore.control.registry import CommandRegistry  # every command's module: for the help only
        registry = CommandRegistry()
    return USAGE + "\nCommands:\n" + "\n".join(f"    {line}" for line in registry.usage())


def _value(arg, args, what, optionLength=2):
    value = arg[optionLength:] or (args.pop(0) if args else None)
    if not value:
        raise UsageError(f"{arg[:optionLength]} needs {what}")
    return value


def parseArguments(argv):
    """Conquest style: options glued to their value (``-w/srv``) or separate."""
    options = {"workdir": None, "actions": [], "verbose": False, "commands": [], "host": None, "port": None}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-?", "-h", "--help"):
            options["actions"].append(("help", ""))
        elif arg.startswith("--"):
            options["commands"].append(arg)
        elif arg.startswith("-w"):
            options["workdir"] = _value(arg, args, "a folder")
        elif arg.startswith("-p"):
            port = _value(arg, args, "a port")
            try:
                options["port"] = portNumber(port)
            except ValueError:
                raise UsageError(f"-p needs a port number from 1 to 65535, not {port!r}") from None
        elif arg.startswith("-q"):
            options["host"] = _value(arg, args, "a host")
        elif arg in ("-i", "-r", "-d", "-m", "-k"):
            options["actions"].append((arg[1], ""))
        elif arg.startswith("-f?"):
            options["actions"].append(("f?", _value(arg, args, "a file", 3)))
        elif arg[:3] in ("-jd", "-jc", "-j*", "-j-", "-nd", "-nc"):
            options["actions"].append(("j", _recompression(arg)))
        elif arg == "-v":
            options["verbose"] = True
        elif arg.startswith("-am"):
            source, _, target = arg[3:].partition(",")
            options["commands"].append(f"--movedatatodevice:{target},{source}")
        elif (command := _shortcut(arg)) is not None:
            options["commands"].append(command)
        else:
            raise UsageError(f"unknown option {arg}")
    return options


def _recompression(arg):
    """``code,file`` of -jdFILE (un), -jc#FILE (j#), -j*##FILE / -j-##FILE (##),
    -ndFILE (uj: NKI decompressed, JPEG left as it is), -nc#FILE (n#)."""
    family, kind = arg[1], arg[2]
    uncompressed = "un" if family == "j" else "uj"
    code = uncompressed if kind == "d" else f"{family}{arg[3:4]}" if kind == "c" else arg[3:5]
    path = arg[3 if kind == "d" else 4 if kind == "c" else 5:]
    if len(code) != 2 or not path:
        raise UsageError(f"{arg[:3]} needs a compression code and a file, e.g. -jc2image.dcm, -j*jkimage.dcm")
    return f"{code},{path}"


def _shortcut(arg):
    """The ``--command:argument`` a SHORTCUTS option stands for, or None."""
    for option, command in SHORTCUTS:
        if arg.startswith(option):
            return command + arg[len(option):]
    return None


def _iniPath(workdir):
    path = os.path.join(workdir, INI_NAME)
    return path if os.path.exists(path) else None


def _writeTo(stream, write):
    """Call ``write``, which writes to ``stream`` (standard output or error).
    When the stream's reader has gone away (``dgate ... | head -1``), the
    rest of what is written to it is dropped, as Python's documentation
    suggests: dgate ends quietly, as a Unix tool does, rather than with a
    BrokenPipeError.  (SIGPIPE stays ignored, as Python sets it: with its
    default, a connection to the server that breaks would end dgate without
    a word.)"""
    try:
        write()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def printLine(text):
    """``print`` to standard output (``_writeTo``)."""
    _writeTo(sys.stdout, lambda: print(text, flush=True))


def escapeUnwritable():
    """Have standard output and error show what their encoding cannot write
    (the bytes of a file name that are not UTF-8, as surrogate escapes; a
    Japanese name on a Latin-1 terminal) as ``\\udcff``, ``\\u5c71``, rather
    than an exception halfway through a listing or -r."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def printError(text):
    """``print`` to standard error (``_writeTo``)."""
    _writeTo(sys.stderr, lambda: print(text, file=sys.stderr, flush=True))


def main(argv=None, out=printLine, err=printError):
    """The console script; returns the exit status (with a ``--command``,
    ``task.react`` ends the process with it once the server answered)."""
    argv = sys.argv[1:] if argv is None else argv
    escapeUnwritable()
    if isCGIRequest(argv, os.environ):
        ini = DicomIni.fromFile(_iniPath(os.getcwd()) or os.path.join(defaultConfigDir(), INI_NAME))
        return runCGI(ini, os.environ, sys.stdin.buffer, _writeBinary)
    try:
        options = parseArguments(argv)
    except UsageError as e:
        err(f"dgate: {e}\n\n{USAGE}")
        return 2
    if ("help", "") in options["actions"] or not (options["actions"] or options["commands"]):
        out(usage())
        return 0
    if options["verbose"]:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    workdir = os.path.abspath(options["workdir"] or os.getcwd())
    if not os.path.isdir(workdir):  # -i would make a new, empty archive there
        err(f"dgate: -w {workdir}: no such folder")
        return 2
    try:
        if options["actions"] and _offline(options["actions"], workdir, out, err):
            return 1
        if options["commands"]:
            ini = DicomIni.fromFile(_iniPath(workdir) or os.path.join(defaultConfigDir(), INI_NAME))
            return remote(options, workdir, ini, out, err)
    except ConfigError as e:
        err(f"dgate: configuration error: {e}")
        return 1
    return 0


def _offline(actions, workdir, out, err):
    """Carry out the offline ``actions`` (pacscore.control.offline, whose
    modules a --command does not need: imported here); 1 when one failed."""
    from pacscore.config.loader import loadConfiguration
    from pacscore.control.offline import OfflineError, offline
    try:
        offline(actions, loadConfiguration(_iniPath(workdir), workdir), out)
    except OfflineError as e:
        err(f"dgate: {e}")
        return 1
    return 0


def remote(options, workdir, ini, out, err):
    """Send the ``--commands`` to the server that ``ini`` (of the working
    folder ``workdir``) describes."""
    description = controlDescription(ini)
    hint = controlPortHint(ini.get("ControlEndpoint", ""))
    if description is None:
        if options["host"] is None and options["port"] is None:
            err(f"dgate: the control port is off (ControlEndpoint = {ini.get('ControlEndpoint')} in the working "
                f"folder's dicom.ini); give -p and -q to reach a server")
            return 1
        description = DEFAULT_ENDPOINT
    if options["port"] is not None and options["port"] == ini.getint("TCPPort", DEFAULT_TCP_PORT):
        err(f"dgate: -p{options['port']} is the DICOM port (TCPPort in the working folder's dicom.ini): {hint}")
        return 1
    task.react(_sendAll, (options["commands"], description, hint, workdir, options["host"], options["port"],
                          ini.get("ControlSecret", "") or None, out, err))


async def _sendAll(reactor, commands, description, hint, workdir, host, port, secret, out, err):
    """Send each command in turn; ends the process with the highest status."""
    try:
        endpoint, label = clientEndpoint(reactor, description, host, port, folder=workdir)
    except ValueError as e:
        err(f"dgate: bad address (ControlEndpoint = {description}): {e}")
        raise SystemExit(1) from None
    status = 0
    for command in commands:
        status = max(status, await _send(endpoint, label, command, secret, out, err, hint))
    if status:
        raise SystemExit(status)


def _writeBinary(content):
    """A command's file (a converted image) to standard output, as it is
    (``_writeTo``)."""
    def write():
        sys.stdout.flush()
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
    _writeTo(sys.stdout, write)


async def _send(endpoint, label, command, secret, out, err, hint):
    try:
        reply = await sendCommand(endpoint, command, secret, output=out, progress=err, data=_writeBinary)
    except error.ConnectionRefusedError:
        err(f"dgate: no pacs server at {label}")
        return 1
    except DicomPortAnswered as e:
        err(f"dgate: {label}: {e}: {hint}")
        return 1
    except (error.ConnectError, OSError, NoAnswer, TLSFailed) as e:
        err(f"dgate: {label}: {e}")
        return 1
    except ClientFailed as e:
        err(f"dgate: {e}")
        return 1
    except ValueError as e:  # e.g. HostnameEndpoint's "invalid hostname"
        err(f"dgate: bad address {label}: {e}")
        return 1
    if reply.ok:
        return 0
    err(f"dgate: {reply.message}")
    return 2 if reply.unknownCommand else 1


if __name__ == "__main__":
    sys.exit(main())
