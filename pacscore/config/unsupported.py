"""Conquest's dicom.ini keys that pacs reads but does not act on, and the
start-up warning that names those a dicom.ini sets (``warnOfKeys``, shared
with the ``[lua]`` section's keys that do not run).

``IGNORED_KEYS`` holds, for each key, the values that ask for what pacs
does anyway (Conquest's defaults, as in etc/dicom.ini): a key set to
another value is named.  ``DecompressNon16BitsJpeg = 0`` (8-bit JPEG left
compressed where Conquest decompresses) and ``FileCompressMode`` (obsolete:
``IncomingCompression``) change what is stored or sent in Conquest; the
others concern Conquest's in-memory queues, its read-ahead thread, its OFFIS
JPEG executables, its Windows GUI or its dBase driver, which pacs has not.

``UNRUN_CONVERTERS`` are Conquest's converter keys for events pacs has not
(merging series and studies, archiving, moving between devices, its
virtual server's queries) or does not run a converter on (an object
refused): a key set to any text is named.
"""

from pacscore.config.ini import MAIN_SECTION

IGNORED_KEYS = {
    "DecompressNon16BitsJpeg": ("1",),
    "FileCompressMode": ("0",),
    "UseBuiltInJPEG": ("1",),
    "IgnoreOutOfMemoryErrors": ("0",),
    "QueueSize": ("128",),
    "EnableReadAheadThread": ("1",),
    "DemoCopy": (),
    "DemoViewer": (),
    "ExternalViewer": (),
    "KeepAlive": ("0",),
    "ZipTime": ("05:",),
    "LargeFileSizeKB": ("1024", "4096"),
    "PrintSquareLandscape": ("0",),
    "OperatorConsole": ("localhost", "127.0.0.1"),
    "BrowseThroughDBF": ("1",),
    "LongQueryDBF": ("1000",),
    "IndexDBF": ("1",),
    "PackDBF": ("0",),
    "DoubleBackSlashToDB": ("0",),
    "UseEscapeStringConstants": ("0",),
}

UNRUN_CONVERTERS = ("RejectedImageConverter0", "RejectedImageWorkListConverter0", "MoveDeviceConverter0",
                    "ArchiveConverter0", "MergeSeriesConverter0", "MergeStudiesConverter0",
                    "VirtualServerQueryConverter", "VirtualServerQueryResultConverter")


def warnOfKeys(log, configuration, keys, section, why):
    """One warning naming ``keys`` (set in ``section`` of dicom.ini, the
    line of the first given) and ``why`` they do nothing."""
    where = "" if section == MAIN_SECTION else f"[{section}] "
    log.warn("{path}:{line}: {where}{keys}: {why}", path=configuration.iniPath,
             line=configuration.ini.lineOf(keys[0], section), where=where, keys=", ".join(keys), why=why)


def warnOfIgnoredKeys(log, configuration):
    """Warn of the ``IGNORED_KEYS`` set to a value pacs does not act on,
    and of the ``UNRUN_CONVERTERS`` set."""
    ini = configuration.ini
    values = {key: ini.get(key, "").strip().lower() for key in IGNORED_KEYS}
    keys = [key for key, value in values.items() if value and value not in IGNORED_KEYS[key]]
    if keys:
        warnOfKeys(log, configuration, sorted(keys, key=ini.lineOf), MAIN_SECTION,
                   "these Conquest keys have no effect here (README: Conquest features not supported)")
    converters = [key for key in UNRUN_CONVERTERS if ini.get(key, "").strip()]
    if converters:
        warnOfKeys(log, configuration, sorted(converters, key=ini.lineOf), MAIN_SECTION,
                   "these Conquest converters do not run here (README: Conquest features not supported)")
