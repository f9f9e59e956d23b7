"""The converter lines of dicom.ini (manual 7.2), parsed when the
configuration is read, and again when a control command changes them
(``pacscore.control.converterlines``).

``ImportConverterN`` lines (``ImportConverters`` caps their number when
present) and ``ExportConverterN`` lines (``ExportConverters``, default 0,
sets their number: Conquest ignores the others, and so do we, with a log
line) each become a ``Rule``: the parsed script and the Modality,
StationName, CalledAE and CallingAE filters (default ``*``), plus the SQL
``ExportFilterN`` of export rules.  The query/retrieve converters
(``QueryConverter0`` ...) are kept by key.  An empty line is no converter;
a line that does not parse is a ``ConfigError`` naming the file, line,
key and column.
"""

import re
from dataclasses import dataclass, field

from twisted.logger import Logger

from pacscore.config.errors import ConfigError
from pacscore.converters.context import ConverterSyntaxError
from pacscore.converters.script import Script, parseScript

SPECIAL_KEYS = ("QueryConverter0", "WorkListQueryConverter0", "RetrieveConverter0",
                "RetrieveResultConverter0", "QueryResultConverter0",
                "ModalityWorkListQueryResultConverter0") + tuple(f"CompressionConverter{n}" for n in range(10))

RULE_KEY = re.compile(r"(?P<kind>Import|Export)(Converters|(Converter|Modality|StationName|CalledAE|CallingAE)"
                      r"(0|[1-9][0-9]*))|(?P<filter>Export)Filter(0|[1-9][0-9]*)", re.IGNORECASE)

log = Logger()


def ruleKind(key):
    """"import" or "export" for a dicom.ini key the rules of that kind are
    made of (``ImportConverterN``, its filters, ``ImportConverters`` ...;
    ``ExportFilterN``), else None."""
    match = RULE_KEY.fullmatch(key.strip())
    return None if match is None else (match.group("kind") or match.group("filter")).lower()


def filterMatches(pattern, value):
    """Conquest's filter test: ``*`` matches anything (also within a
    pattern, ``RT*``; no other character is a wildcard), an empty filter
    only an empty value; case-insensitive, as Conquest's export filters are."""
    if pattern == "*":
        return True
    value = (value or "").strip()
    expression = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(expression, value, re.IGNORECASE | re.DOTALL) is not None


@dataclass(frozen=True)
class Rule:
    """One ImportConverterN or ExportConverterN line and its filters."""

    key: str
    number: int
    script: Script
    modality: str = "*"
    stationName: str = "*"
    calledAE: str = "*"
    callingAE: str = "*"
    filter: str = ""    # ExportFilterN: SQL on the index, tested by the exporter

    def matches(self, modality, stationName, calledAE, callingAE):
        """Whether an object with these values passes the filters."""
        return (filterMatches(self.modality, modality)
                and filterMatches(self.stationName, stationName)
                and filterMatches(self.calledAE, calledAE)
                and filterMatches(self.callingAE, callingAE))


@dataclass
class ConverterRules:
    importRules: list = field(default_factory=list)
    exportRules: list = field(default_factory=list)
    special: dict = field(default_factory=dict)   # "QueryConverter0" ... -> Script


def _script(ini, key, registry, kind):
    text = ini.get(key, "")
    if not text.strip():
        return None
    try:
        return parseScript(text, key, registry, kind)
    except ConverterSyntaxError as e:
        raise ConfigError(ini.path, ini.lineOf(key), str(e)) from None


def _rules(ini, registry, prefix, count):
    """The rules of ``<prefix>ConverterN``; ``count`` (or None: every N
    present) limits N."""
    pattern = re.compile(rf"{prefix}Converter(0|[1-9][0-9]*)", re.IGNORECASE)
    present = sorted({int(match.group(1)) for key, _ in ini.items()
                      if (match := pattern.fullmatch(key))})
    numbers = present if count is None else range(count)
    for number in present:
        if number not in numbers:
            log.info("{prefix}Converter{number} ignored: {prefix}Converters = {count}",
                     prefix=prefix, number=number, count=count)
    rules = []
    for number in numbers:
        key = f"{prefix}Converter{number}"
        script = _script(ini, key, registry, prefix.lower())
        if script is None:
            continue
        rules.append(Rule(key, number, script,
                          modality=ini.get(f"{prefix}Modality{number}", "*"),
                          stationName=ini.get(f"{prefix}StationName{number}", "*"),
                          calledAE=ini.get(f"{prefix}CalledAE{number}", "*"),
                          callingAE=ini.get(f"{prefix}CallingAE{number}", "*"),
                          filter=ini.get(f"ExportFilter{number}", "") if prefix == "Export" else ""))
    return rules


def loadRules(ini, registry):
    """The ``ConverterRules`` of ``ini`` (a ``pacscore.config.ini.DicomIni``)
    with the commands of ``registry``.  Raises ConfigError."""
    special = {}
    for key in SPECIAL_KEYS:
        script = _script(ini, key, registry, "import")
        if script is not None:
            special[key] = script
    return ConverterRules(importRules=_rules(ini, registry, "Import", ini.getint("ImportConverters", None)),
                          exportRules=_rules(ini, registry, "Export", ini.getint("ExportConverters", 0)),
                          special=special)
