"""dgatesop.lst: what incoming associations may use (manual 7.5).

Each entry is ``Name  UID  kind  [extra]`` separated by blanks.  The kind
(third column, any case) is ``sop`` (Conquest also reads ``abstract`` as
``sop``), ``transfer``, ``application``, ``RemoteAE`` or ``LocalAE``.  For
the last two the second column is not a UID but the AE title that is
accepted, as Conquest's ``CheckedPDU_Service`` reads it (``#None none
RemoteAE``: name "None", AE title "none"); ``SopEntry.aeTitle`` gives it.
An empty list of a kind means "anything is accepted" to Conquest.

A line starting with ``#`` is a comment; if the rest of it is a well-formed
entry it is kept as a disabled entry (``enabled=False``) so that it can be
enabled again.  The writer keeps comments and untouched lines as written.
"""

import re
from dataclasses import dataclass, replace

from pacscore.config.errors import ConfigError
from pacscore.config.textfile import LineFile, lineEnding, splitLines

KINDS = ("sop", "abstract", "transfer", "application", "remoteae", "localae")
_SPELLING = {"remoteae": "RemoteAE", "localae": "LocalAE"}
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


@dataclass
class SopEntry:
    """One entry.  ``kind`` is lower case; ``uid`` is the second column."""

    name: str
    uid: str
    kind: str
    extra: str | None = None
    enabled: bool = True

    @property
    def aeTitle(self):
        """The AE title of a RemoteAE/LocalAE entry (its second column), else None."""
        return self.uid if self.kind in ("remoteae", "localae") else None


@dataclass
class _Row:
    """A line of the file with the entry on it, if any."""

    text: str
    entry: SopEntry | None = None


def _parseEntry(text):
    """``(SopEntry or None, problem or None)`` for the text of one line."""
    fields = text.split()
    if len(fields) < 3:
        return None, "expected 'Name UID kind [extra]'"
    name, uid, kind = fields[0], fields[1], fields[2].lower()
    if kind not in KINDS:
        return None, f"unknown kind {fields[2]!r} (expected sop, transfer, application, RemoteAE or LocalAE)"
    if kind not in ("remoteae", "localae") and not (_UID.fullmatch(uid) and len(uid) <= 64):
        return None, f"malformed UID {uid!r} for {name}"
    return SopEntry(name, uid, kind, " ".join(fields[3:]) or None), None


def _formatEntry(entry):
    name = entry.name if entry.enabled else "#" + entry.name
    text = f"{name:<52} {entry.uid:<32} {_SPELLING.get(entry.kind, entry.kind)}"
    return f"{text} {entry.extra}" if entry.extra else text


class SopList(LineFile):
    """The parsed dgatesop.lst.  Edit it with ``put``/``delete``, not through ``entries``."""

    @classmethod
    def fromString(cls, text, path="dgatesop.lst"):
        rows = []
        for number, line in enumerate(splitLines(text), start=1):
            stripped = line.strip()
            if not stripped:
                rows.append(_Row(line))
            elif stripped.startswith("#"):
                entry, _ = _parseEntry(stripped.lstrip("#"))
                if entry is not None:
                    entry.enabled = False
                rows.append(_Row(line, entry))
            else:
                entry, problem = _parseEntry(stripped)
                if problem:
                    raise ConfigError(path, number, f"{problem}, got {stripped!r}")
                rows.append(_Row(line, entry))
        return cls(path, rows, lineEnding(text))

    @property
    def entries(self):
        """Every entry, disabled ones included, in file order (a new list each time)."""
        return [row.entry for row in self._rows if row.entry is not None]

    def _enabled(self, *kinds):
        return [e for e in self.entries if e.enabled and e.kind in kinds]

    def sops(self):
        """Enabled abstract syntaxes (``sop`` and ``abstract`` lines)."""
        return self._enabled("sop", "abstract")

    def transfers(self):
        return self._enabled("transfer")

    def applications(self):
        return self._enabled("application")

    def remoteAEs(self):
        """Enabled RemoteAE entries; the calling AE titles accepted are their ``aeTitle``."""
        return self._enabled("remoteae")

    def localAEs(self):
        """Enabled LocalAE entries; the called AE titles accepted are their ``aeTitle``."""
        return self._enabled("localae")

    # -- editing

    def _entryRows(self):
        return [i for i, row in enumerate(self._rows) if row.entry is not None]

    def put(self, index, entry):
        """Replace entry ``index``, or append after the last entry if ``index == len(entries)``.

        To enable or disable an entry, put a copy with ``enabled`` changed.
        Raises ValueError for an entry the file could not hold.
        """
        parsed, problem = _parseEntry(_formatEntry(entry).lstrip("#"))
        if problem or parsed != replace(entry, enabled=True):
            raise ValueError(f"cannot write {entry} to {self.path}: {problem or 'blanks in a field'}")
        positions = self._entryRows()
        row = _Row(_formatEntry(entry), entry)
        if index == len(positions):
            self._rows.insert(positions[-1] + 1 if positions else len(self._rows), row)
        elif 0 <= index < len(positions):
            self._rows[positions[index]] = row
        else:
            raise IndexError(f"no entry {index} in {self.path}")

    def delete(self, index):
        positions = self._entryRows()
        if not 0 <= index < len(positions):
            raise IndexError(f"no entry {index} in {self.path}")
        del self._rows[positions[index]]
