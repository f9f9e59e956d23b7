"""The ``dgate`` command line, with Conquest's syntax (manual appendix 6).

Offline options work on the configuration of the working folder (its
dicom.ini, else the packaged defaults) without a running server:

    dgate [-wDIR] -i        initialise the index tables
    dgate [-wDIR] -r        initialise the tables and regenerate them from the MAG devices
    dgate -v ...            report (log) to stdout
    dgate -?                this help
"""

import os
import sys

from twisted.logger import globalLogBeginner, textFileLogObserver

from pacscore.config.errors import ConfigError
from pacscore.config.loader import loadConfiguration
from pacscore.db.drivers import findDriver
from pacscore.db.index import Index
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

(2) dgate [-pPORT] [-qHOST] --command:arguments
    Send a command to a running server (needs the control port; not in this version)
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


def initialize(configuration, out):
    index, description = openIndex(configuration)
    out(f"Initialising the index tables in {description}")
    index.initializeTables()
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
    if options["commands"]:
        out(f"dgate: {options['commands'][0]}: the control port is not available in this version")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
