"""The ``dgate`` command line, with Conquest's syntax (manual appendix 6).

Offline options work on the configuration of the working folder (its
dicom.ini, else the packaged defaults) without a running server:

    dgate [-wDIR] -i        initialise the index tables
    dgate [-wDIR] -r        initialise the tables and regenerate them from the MAG devices
    dgate -v ...            report (log) to stdout
    dgate -?                this help
    dgate --loadhl7:file    apply the HL7 messages of a file to the worklist
    dgate --initializetables:N   0/1: clear the image tables, 2: clear the worklist
    dgate --forwardqueue    the export/forward queue: depths, failed items
    dgate --retryforwards[:AE]   put failed forwards (to AE) back in the queue

Until the control port exists, these ``--`` commands work directly on
the database of the working folder's configuration (SQLite allows that
while the server runs); every other ``--command`` is refused.
"""

import os
import sys

from twisted.logger import globalLogBeginner, textFileLogObserver

from pacscore.config.errors import ConfigError
from pacscore.config.loader import loadConfiguration
from pacscore.db.drivers import findDriver
from pacscore.db.index import Index
from pacscore.db.worklistitems import WorklistItems, runNow
from pacscore.export.queue import ExportQueue
from pacscore.hl7.dropfolder import applyMessages
from pacscore.hl7.intake import WorklistIntake
from pacscore.hl7.mapping import WorklistMapping
from pacscore.storage.devices import MagDevice
from pacscore.storage.regen import Regenerator

USAGE = """\
DGATE: pacs DICOM archive utility (Conquest dgate syntax)

Usage:
(1) dgate [-v] [-wDIR] [-i|-r]
    -wDIR   Set the working folder (dicom.ini, acrnema.map, ... and relative paths)
    -i      Initialise the index tables (patients, studies, series, images)
    -r      Initialise the index tables and regenerate them from the files on the MAG devices
    -v      Report to stdout
    -?      Show this help

(2) dgate [-wDIR] --loadhl7:file          Apply the HL7 messages of a file to the worklist
    dgate [-wDIR] --initializetables:N    0 or 1: clear the image tables; 2: clear the worklist
    dgate [-wDIR] --forwardqueue          Show the export/forward queue and its failed items
    dgate [-wDIR] --retryforwards[:AE]    Put the failed forwards (to AE) back in the queue
    (these work on the database directly; a running server picks the changes up)

(3) dgate [-pPORT] [-qHOST] --command:arguments
    Send any other command to a running server (needs the control port; not in this version)
"""


class UsageError(Exception):
    """Bad command line."""


def parseArguments(argv):
    """Conquest style: options glued to their value (``-w/srv``) or separate."""
    options = {"workdir": None, "actions": [], "verbose": False, "commands": []}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-?", "-h", "--help"):
            options["actions"].append("help")
        elif arg.startswith("--"):
            options["commands"].append(arg)
        elif arg.startswith("-w"):
            value = arg[2:] or (args.pop(0) if args else None)
            if not value:
                raise UsageError("-w needs a folder")
            options["workdir"] = value
        elif arg == "-i":
            options["actions"].append("init")
        elif arg == "-r":
            options["actions"].append("regen")
        elif arg == "-v":
            options["verbose"] = True
        elif arg.startswith(("-p", "-q")):
            continue
        else:
            raise UsageError(f"unknown option {arg}")
    return options


def openIndex(configuration):
    driver, description = findDriver(None, configuration)
    engine = driver.createEngine(description, configuration)
    return Index(engine, configuration.layout, configuration.tableNames,
                 writerThreads=driver.writerThreads), description


def initialize(configuration, out, worklist=False):
    """Drop and create the image tables, or with ``worklist`` the worklist table."""
    index, description = openIndex(configuration)
    out(f"Initialising the {'worklist' if worklist else 'index'} tables in {description}")
    index.initializeTables(worklist=worklist)
    index.createTables()
    return index


def regenerate(configuration, out):
    index = initialize(configuration, out)
    devices = [MagDevice(name, path) for name, path in configuration.magDevices]
    regenerator = Regenerator(index, configuration.layout.indexedTags(), report=out)
    regenerator.regenerate([d for d in devices if os.path.isdir(d.path)])
    return regenerator


def main(argv=None, out=print):
    argv = sys.argv[1:] if argv is None else argv
    try:
        options = parseArguments(argv)
    except UsageError as e:
        out(f"dgate: {e}\n\n{USAGE}")
        return 2
    if "help" in options["actions"] or not (options["actions"] or options["commands"]):
        out(USAGE)
        return 0
    unknown = [c for c in options["commands"] if _commandName(c) not in OFFLINE_COMMANDS]
    if unknown:
        out(f"dgate: {unknown[0]}: the control port is not available in this version")
        return 2
    if options["verbose"]:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    workdir = os.path.abspath(options["workdir"] or os.getcwd())
    iniPath = os.path.join(workdir, "dicom.ini")
    try:
        configuration = loadConfiguration(iniPath if os.path.exists(iniPath) else None, workdir)
    except ConfigError as e:
        out(f"dgate: configuration error: {e}")
        return 1
    for action in options["actions"]:
        if action == "init":
            initialize(configuration, out)
        elif action == "regen":
            regenerate(configuration, out)
    status = 0
    for command in options["commands"]:
        name, _, argument = command[2:].partition(":")
        status = max(status, OFFLINE_COMMANDS[name.lower()](configuration, argument, out))
    return status


def _commandName(command):
    return command[2:].partition(":")[0].lower()


def loadHL7(configuration, path, out):
    """``--loadhl7:file``: 0 when every message was accepted (AA)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        out(f"dgate: --loadhl7: {e}")
        return 1
    index, description = openIndex(configuration)
    index.createTables()
    mapping = WorklistMapping(configuration.layout.worklist)
    items = WorklistItems(index, mapping.generatedColumns, runWrite=runNow(index))
    outcomes = []
    applyMessages(WorklistIntake(mapping, items, application=configuration.aeTitle), data
                  ).addCallback(outcomes.extend)
    for number, outcome in enumerate(outcomes, 1):
        out(f"message {number}: {outcome.code} {outcome.text}")
    if not outcomes:
        out(f"dgate: --loadhl7: no HL7 message in {path}")
    return 0 if outcomes and all(o.code == "AA" for o in outcomes) else 1


def initializeTables(configuration, argument, out):
    """``--initializetables:N``: 0 or 1 the image tables, 2 the worklist."""
    if argument.strip() not in ("", "0", "1", "2"):
        out(f"dgate: --initializetables:{argument}: expected 0, 1 or 2")
        return 2
    initialize(configuration, out, worklist=argument.strip() == "2")
    return 0


def openQueue(configuration):
    index, _ = openIndex(configuration)
    queue = ExportQueue.fromConfiguration(index, configuration)
    queue.createTables()
    return queue


def forwardQueue(configuration, argument, out):
    """``--forwardqueue``: depths per state and destination, failed items."""
    queue = openQueue(configuration)
    counts = queue.counts()
    out(f"export jobs: {counts['jobs'].get('pending', 0)} pending, {counts['jobs'].get('failed', 0)} failed")
    for destination, states in sorted(counts["destinations"].items()):
        out(f"{destination or '(local)'}: {states.get('pending', 0)} pending, {states.get('failed', 0)} failed")
    for action, error in queue.failedActions():
        out(f"failed: #{action.id} {action.action} {action.level} to {action.destination or '-'} "
            f"after {action.attempts} attempts: {error}")
    return 0


def retryForwards(configuration, argument, out):
    """``--retryforwards[:AE]``: failed items back in the queue."""
    count = openQueue(configuration).retryFailed(argument.strip() or None)
    out(f"{count} failed item(s) put back in the queue")
    return 0


OFFLINE_COMMANDS = {"loadhl7": loadHL7, "initializetables": initializeTables, "forwardqueue": forwardQueue,
                    "retryforwards": retryForwards}


if __name__ == "__main__":
    sys.exit(main())
