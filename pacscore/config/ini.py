"""dicom.ini: Conquest's main settings file (manual 7.2), read and edited in place.

The format is Conquest's own reading of Windows ini files (its ``gpps.cpp``):
``[section]`` headers, ``Key = value`` lines (spaces around ``=`` optional,
keys and section names case-insensitive), whole-line comments starting with
``#`` or ``;``; any other line (a stray word) is ignored, as Conquest
ignores it, with a warning naming the line.  A value is everything after
the first ``=``, stripped; there are no inline comments, because converter
scripts contain ``#``, ``=`` and ``;``.  Like Conquest, a value wholly enclosed in matching double or single
quotes is unquoted, and the first of two equal keys in a section wins
(``Configuration.warnOfRepeatedKeys`` warns of the other).
Conquest's code reads ``MAGDeviceThreshHold``, ``NightlyCleanThreshHold`` ...
where its manual writes ``...Threshold``: a key is found under either
spelling, Conquest's first (the other line is warned of too).
A number is read as Conquest's ``atoi`` reads it where the text after it is
plainly no part of it: ``5678  # port`` is 5678, ``100MB`` 100 (with a
warning naming the line); a value that does not start with a number, or
goes on like a mistyped one (``56a8``), is an error.

Keys written before any header belong to Conquest's main section ``sscscp``.
The writer keeps comments, blank lines and the text of untouched lines.
"""

import re
from dataclasses import dataclass

from twisted.logger import Logger

from pacscore.config.errors import ConfigError
from pacscore.config.textfile import LineFile, lineEnding, splitLines

MAIN_SECTION = "sscscp"
_LEADING_INTEGER = re.compile(r"\s*([+-]?\d+)")
log = Logger()
_warned = set()  # (path, line, key, value) of the numbers read past text, (path, line, text) of the lines
                 # ignored: warned of once


@dataclass
class _Row:
    """One line of the file: ``key`` is None for headers, comments and blanks."""

    text: str
    section: str            # lower-case name of the section the line is in
    line: int | None        # line number in the file read; None once edited
    key: str | None = None  # as written
    value: str | None = None


def _spellings(key):
    """The lower-case spellings ``key`` is looked up under, Conquest's code's
    (``...threshhold``) before its manual's (``...threshold``)."""
    conquest = key.lower().replace("threshold", "threshhold")
    return tuple(dict.fromkeys((conquest, conquest.replace("threshhold", "threshold"))))


def _unquote(value):
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


class DicomIni(LineFile):
    """The parsed dicom.ini; see the module docstring for the syntax."""

    def __init__(self, path, rows, sections, newline="\n"):
        super().__init__(path, rows, newline)
        self._sections = sections  # lower-case name -> name as first written

    @classmethod
    def fromString(cls, text, path="dicom.ini"):
        rows = []
        sections = {}
        section = MAIN_SECTION
        for number, raw in enumerate(splitLines(text), start=1):
            stripped = raw.strip()
            if not stripped or stripped[0] in "#;":
                rows.append(_Row(raw, section, number))
            elif stripped[0] == "[":
                end = stripped.find("]")
                name = stripped[1:end].strip() if end > 0 else ""
                if not name:
                    raise ConfigError(path, number,
                                      f"bad section header {stripped!r}, expected [name]")
                section = name.lower()
                sections.setdefault(section, name)
                rows.append(_Row(raw, section, number))
            elif "=" in stripped:
                key, value = stripped.split("=", 1)
                key = key.strip()
                if not key:
                    raise ConfigError(path, number, f"missing key before '=' in {stripped!r}")
                sections.setdefault(section, section)
                rows.append(_Row(raw, section, number, key, _unquote(value.strip())))
            else:
                if (path, number, stripped) not in _warned:
                    _warned.add((path, number, stripped))
                    log.warn("{path}:{line}: {text!r} is no 'Key = value', [section] or comment: ignored, as "
                             "Conquest ignores it", path=path, line=number, text=stripped)
                rows.append(_Row(raw, section, number))
        return cls(path, rows, sections, lineEnding(text))

    # -- reading

    def _find(self, key, section):
        section = section.lower()
        for spelling in _spellings(key):
            for row in self._rows:
                if row.key is not None and row.section == section and row.key.lower() == spelling:
                    return row
        return None

    def get(self, key, default=None, section=MAIN_SECTION):
        """The value of ``key`` (a str, maybe empty) or ``default`` if absent."""
        row = self._find(key, section)
        return default if row is None else row.value

    def getint(self, key, default, section=MAIN_SECTION):
        """The value of ``key`` as an int; ``default`` if absent or empty.

        Raises ConfigError naming the key if the value is not an integer.
        """
        row = self._find(key, section)
        if row is None or row.value == "":
            return default
        match = _LEADING_INTEGER.match(row.value)
        rest = row.value[match.end():] if match else ""
        if match is None or rest and not (rest[0].isspace() or rest[0] in "#;" or rest.isalpha()):
            raise ConfigError(self.path, row.line, f"{row.key} must be an integer, not {row.value!r}")
        if rest and (self.path, row.line, row.key, row.value) not in _warned:
            _warned.add((self.path, row.line, row.key, row.value))
            log.warn("{path}:{line}: {key} = {value!r} read as {number}, as Conquest reads it",
                     path=self.path, line=row.line, key=row.key, value=row.value, number=int(match.group(1)))
        return int(match.group(1))

    def has(self, key, section=MAIN_SECTION):
        return self._find(key, section) is not None

    def lineOf(self, key, section=MAIN_SECTION):
        """The line number of ``key`` in the file read (for error messages), or None."""
        row = self._find(key, section)
        return None if row is None else row.line

    def repeatedKeys(self, section=MAIN_SECTION):
        """``[(line, key, value, line read, its key, its value), ...]``:
        the lines of ``section`` that ``get`` does not read, a key written
        again (case ignored) or under its other spelling, each with the
        line ``get`` reads instead, in file order."""
        rows = [row for row in self._rows if row.key is not None and row.section == section.lower()]
        read = {}  # Conquest's spelling -> the row _find finds
        for row in rows:
            name = _spellings(row.key)[0]
            first = read.setdefault(name, row)
            if row.key.lower() == name != first.key.lower():  # Conquest's spelling after the manual's
                read[name] = row
        return [(row.line, row.key, row.value, used.line, used.key, used.value) for row in rows
                if (used := read[_spellings(row.key)[0]]) is not row]

    def sectionNames(self):
        """Names of the sections with a header or a key, as first written, in file order."""
        return list(self._sections.values())

    def items(self, section=MAIN_SECTION):
        """``[(key as written, value), ...]`` of ``section`` in file order."""
        return [(key, value) for _, key, value in self.numberedItems(section)]

    def numberedItems(self, section=MAIN_SECTION):
        """``[(line number, key as written, value), ...]`` of ``section`` in
        file order (a key written twice: each line's own number)."""
        section = section.lower()
        return [(row.line, row.key, row.value) for row in self._rows
                if row.key is not None and row.section == section]

    # -- editing

    def set(self, key, value, section=MAIN_SECTION):
        """Set ``key`` to ``value``; an existing line keeps its place and
        spelling.  ``get`` then gives the value as reading the file would
        (one pair of quotes and the spaces around it taken off), so what the
        running server uses is what it will read at its next start."""
        value = str(value)
        key = key.strip()
        if "\n" in value or "\r" in value:
            raise ValueError("a value must be a single line")
        if not key or key[0] in "#;[" or any(c in key for c in "=\r\n"):
            raise ValueError(f"not a usable key: {key!r}")
        row = self._find(key, section)
        if row is not None:
            head = row.text[:row.text.index("=") + 1]
            after = row.text[len(head):]
            spacing = after[:len(after) - len(after.lstrip())]
            row.text, row.value, row.line = head + spacing + value, _unquote(value.strip()), None
            return
        lowered = section.lower()
        newRow = _Row(f"{key} = {value}", lowered, None, key, _unquote(value.strip()))
        inSection = [i for i, r in enumerate(self._rows) if r.section == lowered]
        if not inSection:
            self._sections[lowered] = section
            if self._rows and self._rows[-1].text.strip():
                self._rows.append(_Row("", lowered, None))
            self._rows.append(_Row(f"[{section}]", lowered, None))
            self._rows.append(newRow)
            return
        keyed = [i for i in inSection if self._rows[i].key is not None]
        self._rows.insert((keyed or inSection)[-1] + 1, newRow)

    def delete(self, key, section=MAIN_SECTION):
        """Remove ``key`` (every line of it); a missing key is not an error."""
        section, spellings = section.lower(), _spellings(key)
        self._rows = [row for row in self._rows
                      if not (row.key is not None and row.section == section
                              and row.key.lower() in spellings)]
