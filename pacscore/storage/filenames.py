"""Conquest's FileNameSyntax (manual 7.2): the path of a stored object below
its MAG device.

Follows Conquest's GenerateFileName (dgatefn.cpp) where the manual is vague:
the directory of modes 0-2 is Name[8]_ID[8] (the manual says ID_Name); the
patient name, ID, study ID, modality, series/image number, image ID, study
description and %V values are "cleaned" (``/ \\ ; > < | , . space : ? * "``
become "_", the value ends at the first control character, trailing "_" go,
an empty value becomes "unknown"); an absent attribute reads "empty"; Time
is the unsigned epoch seconds and Counter four lowercase hex digits of a
counter that wraps at 0x10000; MaxFileNameLength cuts characters from the
start of what follows the patient directory (for mode 10 and templates,
where Conquest has no such directory, what follows the first directory).

Conquest's whole path can then be longer than the 255 characters of the
index's ObjectFile column (mode 11 and 12, a template such as
``%id\\%studyuid\\%seriesuid\\%sopuid.dcm``, with 64-character values: 263),
which its database refuses or cuts (the name then names no file); such a
path is cut the same way to 255 (``fitPath``), from the start of what
follows the first directory, or of the whole path when that directory
takes more than half of it: the end, which names each object apart
(``%sopuid``, the extension), stays.

Beyond Conquest, every name is made safe for the device: "\\" is a
directory separator, values that Conquest does not clean (UIDs, study
date, AE titles) cannot contain a separator or a control character, and the
result is relative without ".", ".." or empty components, and no name in it
starts with "." (a hidden file or folder, which regen skips): where
Conquest's MaxFileNameLength cut makes one (``%id\\%sopuid.dcm`` cut to 10:
``PID1/.498.3.dcm``), that "." becomes "_".
"""

import re
import time

from pacscore.converters.elements import findReference, parseReference, textOf
from pacscore.db.filepaths import OBJECT_FILE_LENGTH, storedPath

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SOP_INSTANCE_UID = 0x00080018
STUDY_ID = 0x00200010
SERIES_NUMBER = 0x00200011
INSTANCE_NUMBER = 0x00200013
MODALITY = 0x00080060
STUDY_DATE = 0x00080020
STUDY_DESCRIPTION = 0x00081030
IMAGE_ID = 0x00540400

# Transfer syntaxes a ".v2" may hold; any other turns ".v2" into ".dcm".
_UNCOMPRESSED = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
# Modes whose names end in ".dcm" whatever the transfer syntax.
_DCM_MODES = frozenset({4, 8, 9, 10, 11, 12})

_CLEANED = str.maketrans(dict.fromkeys('/\\;><|,. :?*"', "_"))
NAME_MAX = 255  # bytes of one file or folder name (ext4, XFS ...)
_VALUE_END = re.compile("[\x00-\x20]")  # Cleanup() ends a value at a control character
_UNSAFE = re.compile("[\x00-\x1f/\\\\]")
_CONTROLS = re.compile("[\x00-\x1f]")
_ATOI = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")  # C's atoi: ASCII blanks and digits only
_SUBSTRING = re.compile(r"\[\s*([+-]?\d+)(?:,\s*([+-]?\d+))?")

# The %-template names in the order Conquest tries them (first prefix wins).
_TEMPLATE_NAMES = (
    "name", "id", "modality", "studyid", "studyuid", "seriesid", "seriesuid",
    "sopuid", "imageid", "imagenum", "image", "series", "time", "date",
    "counter", "calledae", "callingae", "studydate", "studydesc",
)
_TEMPLATE_TAGS = {
    "name": {PATIENT_NAME}, "id": {PATIENT_ID}, "modality": {MODALITY},
    "studyid": {STUDY_ID}, "studyuid": {STUDY_INSTANCE_UID},
    "seriesid": {SERIES_NUMBER}, "seriesuid": {SERIES_INSTANCE_UID},
    "sopuid": {SOP_INSTANCE_UID}, "imageid": {IMAGE_ID},
    "imagenum": {INSTANCE_NUMBER}, "image": {INSTANCE_NUMBER},
    "series": {SERIES_NUMBER}, "studydate": {STUDY_DATE},
    "studydesc": {STUDY_DESCRIPTION},
}
_MODE_TAGS = {
    0: {PATIENT_NAME, PATIENT_ID, SERIES_NUMBER, INSTANCE_NUMBER},
    2: {PATIENT_NAME, PATIENT_ID, SERIES_INSTANCE_UID, SERIES_NUMBER, INSTANCE_NUMBER},
    3: {PATIENT_ID, SERIES_INSTANCE_UID, SERIES_NUMBER, INSTANCE_NUMBER},
    5: {PATIENT_NAME, SERIES_INSTANCE_UID, SERIES_NUMBER, INSTANCE_NUMBER},
    6: {PATIENT_ID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID},
    7: {STUDY_INSTANCE_UID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID},
    10: {SOP_INSTANCE_UID},
    11: {PATIENT_NAME, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID, SOP_INSTANCE_UID},
    12: {PATIENT_NAME, PATIENT_ID, MODALITY, STUDY_ID, SERIES_NUMBER, SOP_INSTANCE_UID},
}
_MODE_TAGS.update({1: _MODE_TAGS[0], 4: _MODE_TAGS[3], 8: _MODE_TAGS[6], 9: _MODE_TAGS[7]})


def _bytesCut(value, size):
    """``value`` cut to at most ``size`` bytes of UTF-8, at a character
    boundary (Conquest counts bytes: 64 Japanese characters are 192)."""
    return value.encode("utf-8")[:size].decode("utf-8", "ignore")


def cleanup(value):
    """Conquest's Cleanup(): a value made fit for a file or directory name."""
    value = _bytesCut(_VALUE_END.split(value.translate(_CLEANED), 1)[0], 65).rstrip("_")
    return value or "unknown"


def _fitted(part):
    """A path part of at most 255 bytes (NAME_MAX), as a long template can
    make one: its start cut, the end (the UID, the extension) kept."""
    data = part.encode("utf-8")
    return part if len(data) <= NAME_MAX else data[len(data) - NAME_MAX:].decode("utf-8", "ignore")


def _unhidden(part):
    """``part`` of a path with a leading "." made "_": a hidden file or
    folder, which regen skips (``regularfiles.hidden``), as Conquest's own
    MaxFileNameLength cut can make one (``PID1/.498.3.dcm``)."""
    return "_" + part[1:] if part.startswith(".") else part


def fitPath(name, limit=OBJECT_FILE_LENGTH):
    """``name``, a relative path, cut to at most ``limit`` characters as
    the index's ObjectFile column holds it (``storedPath``: a name not
    UTF-8 takes more) from the start of what follows its first directory,
    or of the whole path when that directory takes more than half of
    ``limit``: its end stays, a "." it would start a name with (a hidden
    file or folder) made "_"."""
    if len(storedPath(name)) <= limit:
        return name
    keep = name.find("/") + 1
    if len(storedPath(name[:keep])) > limit // 2:
        keep = 0
    start = max(keep, len(name) - (limit - keep))  # enough for a path stored as it is; one escaped loses more
    while True:
        rest = name[start:].lstrip("/")
        fitted = name[:keep] + _unhidden(rest)
        if len(storedPath(fitted)) <= limit:
            return fitted
        start += 1


def atoi(text):
    """``text`` as C's atoi reads it, as Conquest does: the number it
    starts with (after ASCII blanks, in ASCII digits), 0 when it starts
    with none."""
    match = _ATOI.match(text)
    return int(match.group(1)) if match else 0


def _value(attrs, tag):
    """The attribute as Conquest reads it: at most 64 bytes, "empty" if absent."""
    value = attrs.get(tag)
    return "empty" if value is None else _bytesCut(value, 64)


def _safe(value):
    """A value Conquest uses as it is (UIDs, date, AE), without separators or controls."""
    return _UNSAFE.sub("_", value)


def safeName(value):
    """``value`` made fit to be (part of) one file name, as the values
    Conquest does not clean are: no separator or control character, and no
    leading "." (so neither "." nor "..", alone or joined to another)."""
    value = _safe(value)
    return "_" + value[1:] if value.startswith(".") else value


class _Fields:
    """The values one name is built from, as GenerateFileName computes them
    (each when a mode or template asks for it)."""

    def __init__(self, attrs, callingAE, calledAE):
        self.attrs = attrs
        self.callingAE = callingAE
        self.calledAE = calledAE

    def _cleaned(self, tag):
        return cleanup(_value(self.attrs, tag))

    def _uncleaned(self, tag):
        return _safe(_value(self.attrs, tag))

    name = property(lambda self: self._cleaned(PATIENT_NAME))
    id = property(lambda self: self._cleaned(PATIENT_ID))
    studyid = property(lambda self: self._cleaned(STUDY_ID))
    modality = property(lambda self: self._cleaned(MODALITY))
    seriesid = property(lambda self: self._cleaned(SERIES_NUMBER))
    imagenum = property(lambda self: self._cleaned(INSTANCE_NUMBER))
    imageid = property(lambda self: self._cleaned(IMAGE_ID))
    studydesc = property(lambda self: self._cleaned(STUDY_DESCRIPTION))
    studyuid = property(lambda self: self._uncleaned(STUDY_INSTANCE_UID))
    seriesuid = property(lambda self: self._uncleaned(SERIES_INSTANCE_UID))
    sopuid = property(lambda self: self._uncleaned(SOP_INSTANCE_UID))
    studydate = property(lambda self: self._uncleaned(STUDY_DATE))
    calledae = property(lambda self: _safe(self.calledAE.rstrip(" ")))
    callingae = property(lambda self: _safe(self.callingAE.rstrip(" ")))
    series = property(lambda self: atoi(self.attrs.get(SERIES_NUMBER, "")))
    image = property(lambda self: atoi(self.attrs.get(INSTANCE_NUMBER, "")))


def _parseTemplate(syntax):
    """Split a %-template into parts: literal strings and (name, tag, substring).

    Unknown names vanish with their "%" (the text after them stays, as in
    Conquest); ``tag`` is set for %Vgggg,eeee, and is the
    ``elements.parseReference`` reference of a "reference" (%V*gggg,eeee
    or a sequence path); ``substring`` is the
    (first, last) of a ``[first,last]`` suffix or None.
    """
    parts = []
    i, length = 0, len(syntax)
    while i < length:
        if syntax[i] != "%":
            char = "/" if syntax[i] == "\\" else syntax[i]
            if parts and isinstance(parts[-1], str):
                parts[-1] += char
            else:
                parts.append(char)
            i += 1
            continue
        i += 1
        name = tag = None
        for candidate in _TEMPLATE_NAMES:
            if syntax.startswith(candidate, i):
                name = candidate
                i += len(candidate)
                break
        else:
            if syntax[i:i + 1] in ("v", "V"):
                parsed = parseReference(syntax, i + 1)
                if not parsed:
                    raise ValueError(
                        f"FileNameSyntax {syntax!r}: %V takes gggg,eeee, *gggg,eeee or a "
                        f"\\gggg,eeee\\... sequence path, at {syntax[i - 1:i + 11]!r}")
                (anywhere, steps), i = parsed
                if anywhere or len(steps) > 1:
                    name, tag = "reference", (anywhere, tuple(steps))
                else:
                    name, tag = "v", steps[0][0]
        substring = None
        if syntax.startswith("[", i):
            match = _SUBSTRING.match(syntax, i)
            first = int(match.group(1)) if match else 0
            last = int(match.group(2)) if match and match.group(2) else -1
            substring = (max(first, 0), last)
            close = syntax.find("]", i)
            i = length if close < 0 else close + 1
        if name:
            parts.append((name, tag, substring))
    return parts


class FileNamer:
    """Names stored objects by one FileNameSyntax.

    ``FileNamer("4").name(attrs)`` gives e.g.
    ``"0009703828/1.3.46.670589_0001_000002_12345678990004.dcm"``: a path
    relative to the MAG device, "/"-separated. ``attrs`` maps tags to the
    strings ``attributes.readAttributes`` returns for ``requiredTags``.
    The counter is per namer, as Conquest's is per process.
    """

    def __init__(self, syntax, maxFileNameLength=255, clock=time.time):
        syntax = str(syntax).strip()
        if syntax.startswith("lua:"):
            raise ValueError(f"FileNameSyntax {syntax!r}: lua: file names are not supported")
        self.maxFileNameLength = maxFileNameLength
        self.clock = clock
        self.counter = 0
        self.testMode = ""  # appended to every name (dgate --testmode:)
        if "%" in syntax:
            self.mode = None
            self.template = _parseTemplate(syntax)
            tags = set()
            for part in self.template:
                if isinstance(part, tuple) and part[0] != "reference":
                    tags |= {part[1]} if part[1] is not None else _TEMPLATE_TAGS.get(part[0], set())
            self.requiredTags = frozenset(tags)
            self.needsDataset = any(isinstance(part, tuple) and part[0] == "reference" for part in self.template)
        else:
            self.mode = atoi(syntax)
            self.template = None
            self.requiredTags = frozenset(_MODE_TAGS.get(self.mode, _MODE_TAGS[0]))
            self.needsDataset = False  # name() needs the parsed data set (%V into sequences)

    def _count(self):
        counter = self.counter & 0xFFFF
        self.counter += 1
        return f"{counter:04x}"

    def _time(self):
        return int(self.clock()) & 0xFFFFFFFF

    def _numbered(self, f):
        """(root, name) of a numbered mode, as GenerateFileName's switch makes them."""
        mode = self.mode
        if mode in (1, 2):
            root = f"{f.name[:8]}_{f.id[:8]}"
            series = f"{f.seriesuid}_" if mode == 2 else ""
            return root, (f"{root}/{series}{f.series:04d}_{f.image:06d}_"
                          f"{self._time()}{self._count()}.v2")
        if mode in (3, 4, 5):
            root = f.name if mode == 5 else f.id[:16]
            extension = "dcm" if mode == 4 else "v2"
            return root, (f"{root}/{f.seriesuid}_{f.series:04d}_{f.image:06d}_"
                          f"{self._time()}{self._count()}.{extension}")
        if mode in (6, 8):
            root = f.id[:32]
            extension = "dcm" if mode == 8 else "v2"
            return root, f"{root}/{f.studyuid}/{f.seriesuid}/{f.sopuid}.{extension}"
        if mode in (7, 9):
            extension = "dcm" if mode == 9 else "v2"
            return f.studyuid, f"{f.studyuid}/{f.seriesuid}/{f.sopuid}.{extension}"
        if mode == 10:
            return "Images", f"Images/{f.sopuid}.dcm"
        if mode == 11:
            return f.name, f"{f.name}/{f.studyuid}/{f.seriesuid}/{f.sopuid}.dcm"
        if mode == 12:
            root = f"{f.name}_{f.id}"
            return root, f"{root}/{f.modality}_{f.studyid}/{f.seriesid}/{f.sopuid}.dcm"
        root = f"{f.name[:8]}_{f.id[:8]}"
        return root, f"{root}/{f.series}_{f.image}_{self._time()}.v2"

    def _templated(self, f, attrs, dataset):
        """(root, name) of a %-template; the root is its first directory."""
        out = []
        for part in self.template:
            if isinstance(part, str):
                out.append(part)
                continue
            name, tag, substring = part
            if name == "reference":
                value = cleanup(_bytesCut(textOf(findReference(dataset, tag)), 64))
            elif tag is not None:
                value = cleanup(attrs.get(tag, ""))
            elif name == "image":
                value = f"{f.image:06d}"
            elif name == "series":
                value = f"{f.series:04d}"
            elif name == "time":
                value = str(self._time())
            elif name == "date":
                value = time.strftime("%Y%m%d", time.localtime(self.clock()))
            elif name == "counter":
                value = self._count()
            else:
                value = getattr(f, name)
            if substring:
                first, last = substring
                first, last = min(first, len(value)), min(last, len(value))
                if last >= first:
                    value = value[first:last + 1]
            out.append(value)
        name = "".join(out)
        return (name.split("/", 1)[0] if "/" in name else ""), name

    def name(self, attrs, callingAE="", calledAE="", transferSyntax=None, dataset=None):
        """The relative path for an object with index attributes ``attrs``;
        when ``needsDataset``, ``dataset`` is the object as a pydicom Dataset.

        Give ``transferSyntax`` to have Conquest's rule applied that a ".v2"
        name becomes ".dcm" when the object is not in one of the three
        uncompressed syntaxes (only a name ending in ".v2": a template
        without an extension keeps the end of its UID).
        """
        fields = _Fields(attrs, callingAE, calledAE)
        if self.template is None:
            root, name = self._numbered(fields)
        else:
            root, name = self._templated(fields, attrs, dataset)
        if (transferSyntax is not None and self.mode not in _DCM_MODES
                and transferSyntax.rstrip("\x00 ") not in _UNCOMPRESSED and name.lower().endswith(".v2")):
            name = name[:-3] + ".dcm"
        name += self.testMode
        keep = len(root) + 1 if root else 0
        if 0 < self.maxFileNameLength < len(name) - keep:
            name = name[:keep] + name[len(name) - self.maxFileNameLength:]
        parts = [_unhidden(_fitted(part)) if part.strip(".") else "_" * len(part)
                 for part in _CONTROLS.sub("_", name).split("/") if part]
        return fitPath("/".join(parts) or "unknown")
