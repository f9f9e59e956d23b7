"""dicom.sql: the database layout (manual 7.3).

Five tables (Patient, Study, Series, Image, WorkList), each a list of
``Column`` entries ``{ group, element, "Name", length, SQL_TYPE, DT_TYPE [, "HL7"] }``.

Syntax (Conquest's ``parse.cpp``): ``/* ... */`` comments, lines starting
with ``#`` are comments, a table is ``*Patient*`` followed by
``{ {entry}, {entry} }``.  Like Conquest the comma between entries may be
missing and a comma may follow the last entry.  Numbers are decimal or
``0x`` hexadecimal; the optional seventh field (the HL7 source) belongs to
the WorkList table only.  Patient, Study, Series and Image are required;
WorkList is optional, as in dicom.sql files older than Conquest 1.4.9.
The last entry of Study, Series and Image must be the link to the level
above (PatientID, StudyInstanceUID, SeriesInstanceUID), or it is an error.
An HL7 field missing its closing quote (``"OBR.27 }``, in Conquest 1.4.17's
own dicom.sql.postgres) is read up to a blank or ``}`` as Conquest reads
it, with a warning; any other unclosed quote is an error.
"""

import re
from dataclasses import dataclass, field, replace

from twisted.logger import Logger

from pacscore.config.errors import ConfigError
from pacscore.config.textfile import readConfigText


_DICOM_TYPE_VRS = {"DT_DATE": "DA", "DT_TIME": "TM", "DT_UI": "UI", "DT_UINT16": "US",
                   "DT_UINT32": "UL", "DT_FL": "FL", "DT_FD": "FD"}


@dataclass(frozen=True)
class Column:
    """One ``{ 0x0010, 0x0020, "PatientID", 64, SQL_C_CHAR, DT_STR }`` line."""

    group: int
    element: int
    name: str
    length: int
    sqlType: str          # "SQL_C_CHAR", "SQL_C_DATE", ...
    dicomType: str        # "DT_STR", "DT_UI", "DT_DATE", "DT_TIME", "DT_MSTR", "DT_UINT16", "DT_STARTSEQUENCE", ...
    hl7: str | None = None  # WorkList only: "PID.5", "OBR.7.DATE", "---", "*AN" ...

    @property
    def tag(self) -> int:
        """The DICOM tag as one int, ``0xGGGGEEEE``."""
        return (self.group << 16) | self.element

    @property
    def vr(self) -> str:
        """The VR of the column's values by its DT type (text: LO), for a
        value whose data set gives none (UN: a private tag in implicit VR)."""
        return _DICOM_TYPE_VRS.get(self.dicomType, "LO")

    @property
    def foldsCase(self) -> bool:
        """True for DT_ISTR, Conquest's "case insensitive query string": keys
        match it case-insensitively (pacscore.db.query)."""
        return self.dicomType == "DT_ISTR"

    @property
    def isSequenceMarker(self) -> bool:
        """True for DT_STARTSEQUENCE / DT_ENDSEQUENCE lines (descriptive only)."""
        return self.dicomType in ("DT_STARTSEQUENCE", "DT_ENDSEQUENCE")


@dataclass
class DatabaseLayout:
    """The parsed dicom.sql. Column lists keep the file's order.

    The last column of study/series/image is Conquest's link to the level
    above (PatientID, StudyInstanceUID, SeriesInstanceUID).
    """

    patient: list[Column] = field(default_factory=list)
    study: list[Column] = field(default_factory=list)
    series: list[Column] = field(default_factory=list)
    image: list[Column] = field(default_factory=list)
    worklist: list[Column] = field(default_factory=list)
    path: str = "dicom.sql"

    def levels(self):
        """``[("patient", cols), ("study", cols), ("series", cols), ("image", cols)]``."""
        return [("patient", self.patient), ("study", self.study),
                ("series", self.series), ("image", self.image)]

    def capped(self, maxLength):
        """This layout with no column longer than ``maxLength`` (Conquest's
        MaxFieldLength, which overrules dicom.sql)."""
        return replace(self, **{table: [replace(c, length=min(c.length, maxLength)) for c in getattr(self, table)]
                                for table in TABLES})

    def indexedTags(self) -> dict[int, str]:
        """Every tag the four image-level tables store (what a C-STORE must
        read), with the VR its column reads a value of unknown VR as."""
        return {c.tag: c.vr for _, cols in self.levels() for c in cols}

    @classmethod
    def fromFile(cls, path):
        text, _ = readConfigText(path, writtenBack=False)
        return cls.fromString(text, path)

    @classmethod
    def fromString(cls, text, path="dicom.sql"):
        return _Parser(text, str(path)).parse()


TABLES = ("patient", "study", "series", "image", "worklist")
REQUIRED_TABLES = ("patient", "study", "series", "image")
SQL_TYPES = ("SQL_C_CHAR", "SQL_C_DATE")
DICOM_TYPES = ("DT_STR", "DT_MSTR", "DT_ISTR", "DT_DATE", "DT_TIME", "DT_UI",
               "DT_UINT16", "DT_UINT32", "DT_FL", "DT_FD",
               "DT_STARTSEQUENCE", "DT_ENDSEQUENCE")

# table -> the tag, name and level above of its last column, its link to that level
LINKS = {"study": (0x00100020, "PatientID", "patient"), "series": (0x0020000D, "StudyInstanceUID", "study"),
         "image": (0x0020000E, "SeriesInstanceUID", "series")}

_TOKEN = re.compile(r"""
    (?P<header>\*[A-Za-z]+\*)
  | (?P<punct>[{},])
  | (?P<string>"[^"\n]*")
  | (?P<unclosed>"[^"\s}]*)
  | (?P<word>[A-Za-z0-9_]+)
""", re.VERBOSE)
_NUMBER = re.compile(r"0[xX][0-9A-Fa-f]+|[0-9]+")


class _Parser:
    """A tokenizer and recursive-descent parser keeping line numbers for errors."""

    log = Logger()

    def __init__(self, text, path):
        self.path = path
        self.lastLine = text.count("\n") + (0 if text.endswith("\n") else 1)
        self.tokens = self._tokenize(text)
        self.position = 0

    def fail(self, line, message):
        raise ConfigError(self.path, line, message)

    def _tokenize(self, text):
        """``[(kind, text, line)]`` without comments and blanks."""
        tokens = []
        line, i, lineStart = 1, 0, True
        while i < len(text):
            char = text[i]
            if char == "\n":
                line, i, lineStart = line + 1, i + 1, True
            elif char.isspace():
                i += 1
            elif char == "#" and lineStart:
                end = text.find("\n", i)
                i = len(text) if end < 0 else end
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                if end < 0:
                    self.fail(line, "comment '/*' is never closed by '*/'")
                line += text.count("\n", i, end)
                i, lineStart = end + 2, False
            else:
                match = _TOKEN.match(text, i)
                if match is None:
                    self.fail(line, f"unexpected character {char!r}")
                tokens.append((match.lastgroup, match.group(), line))
                i, lineStart = match.end(), False
        return tokens

    def next(self, expected, unclosed=False):
        """The next token; fails naming ``expected`` at the end of the file,
        and at a string without its closing quote unless ``unclosed``."""
        if self.position >= len(self.tokens):
            self.fail(self.lastLine, f"unexpected end of file, expected {expected}")
        token = self.tokens[self.position]
        self.position += 1
        if token[0] == "unclosed" and not unclosed:
            self.fail(token[2], "missing closing quote '\"'")
        return token

    def expect(self, text, after):
        kind, value, line = self.next(f"'{text}' {after}")
        if value != text:
            self.fail(line, f"expected '{text}' {after}, got {value!r}")

    def parse(self):
        layout = DatabaseLayout(path=self.path)
        seen, lastLines = set(), {}
        while self.position < len(self.tokens):
            kind, value, line = self.next("a table header")
            if kind != "header":
                self.fail(line, f"expected a table header like *Patient*, got {value!r}")
            table = value.strip("*").lower()
            if table not in TABLES:
                self.fail(line, f"unknown table {value} (expected *Patient*, *Study*, "
                                "*Series*, *Image* or *WorkList*)")
            if table in seen:
                self.fail(line, f"table {value} is defined twice")
            seen.add(table)
            columns, lastLines[table] = self.parseTable(value, table == "worklist")
            setattr(layout, table, columns)
        for table in REQUIRED_TABLES:
            if not getattr(layout, table):
                self.fail(self.lastLine, f"required table *{table.capitalize()}* is missing or empty")
        for table in LINKS:
            self.checkLink(table, getattr(layout, table)[-1], lastLines[table])
        return layout

    def parseTable(self, header, hasHL7):
        """The table's columns, and the line of its last entry."""
        self.expect("{", f"after {header}")
        columns, entryLine = [], None
        while True:
            kind, value, line = self.next(f"'}}' closing {header}")
            if value == "}":
                return columns, entryLine
            if value != "{":
                self.fail(line, f"expected '{{' starting an entry or '}}' closing {header}, got {value!r}")
            columns.append(self.parseEntry(header, hasHL7))
            entryLine = line
            if self.position < len(self.tokens) and self.tokens[self.position][1] == ",":
                self.position += 1

    def checkLink(self, table, last, line):
        """Fails unless ``last``, the last column of ``table`` (its entry at
        ``line``), is its link to the level above (Conquest joins the levels
        by the last column)."""
        tag, name, above = LINKS[table]
        if last.tag != tag:
            self.fail(line, f"the last column of *{table.capitalize()}* must be {name} "
                            f"({tag >> 16:04X},{tag & 0xFFFF:04X}), its link to the {above}; "
                            "a column added after it belongs above it")

    def parseEntry(self, header, hasHL7):
        where = f"in an entry of {header}"
        group = self.number(f"for the group {where}")
        self.expect(",", f"after the group {where}")
        element = self.number(f"for the element {where}")
        self.expect(",", f"after the element {where}")
        name = self.string(f"the column name {where}")
        entry = f"entry {name!r} of {header}"
        self.expect(",", f"after the column name in {entry}")
        length = self.number(f"for the length in {entry}")
        self.expect(",", f"after the length in {entry}")
        sqlType = self.word(SQL_TYPES, "SQL type", f"in {entry}")
        self.expect(",", f"after the SQL type in {entry}")
        dicomType = self.word(DICOM_TYPES, "DICOM type", f"in {entry}")
        kind, value, line = self.next(f"'}}' closing {entry}")
        hl7 = None
        if value == ",":
            if not hasHL7:
                self.fail(line, f"a seventh (HL7) field is only allowed in *WorkList*, not in {entry}")
            hl7 = self.string(f"the HL7 field in {entry}", unclosed=True)
            kind, value, line = self.next(f"'}}' closing {entry}")
        if value != "}":
            self.fail(line, f"expected '}}' closing {entry}, got {value!r}")
        if group > 0xFFFF or element > 0xFFFF:
            self.fail(line, f"tag ({group:#x},{element:#x}) of {entry} does not fit in 16 bits")
        return Column(group, element, name, length, sqlType, dicomType, hl7)

    def number(self, what):
        kind, value, line = self.next(f"a number {what}")
        if not _NUMBER.fullmatch(value):
            self.fail(line, f"bad number {value!r} {what}")
        return int(value, 16) if value[:2].lower() == "0x" else int(value)

    def string(self, what, unclosed=False):
        kind, value, line = self.next(f"a quoted string for {what}", unclosed)
        if kind == "unclosed":
            self.log.warn("{path}:{line}: {what} {value} has no closing quote: read as {field!r}, as Conquest "
                          "reads it", path=self.path, line=line, what=what, value=value, field=value[1:])
            return value[1:]
        if kind != "string":
            self.fail(line, f"expected a quoted string for {what}, got {value!r}")
        return value[1:-1]

    def word(self, allowed, what, where):
        kind, value, line = self.next(f"a {what} {where}")
        if value not in allowed:
            self.fail(line, f"unknown {what} {value!r} {where} (expected one of {', '.join(allowed)})")
        return value
