"""acrnema.map: the known DICOM nodes, AE title -> host, port, compression (manual 7.4).

Syntax (Conquest's ``amap.cpp``): C comments ``/* ... */`` may span lines;
``#`` and ``//`` start a comment running to the end of the line; every other
non-blank line is ``AE host port [compression]`` separated by blanks, the
compression defaulting to ``un``; an IPv6 host may be written in brackets,
as URLs write it (``[::1]``, read as ``::1``).

Wildcards: the AE, host and port may end in ``*``.  An entry whose AE ends
in ``*`` matches every called AE starting with the part before the ``*``; the
rest of the called AE is then put in place of a ``*`` ending host or port.
So with ``V*  *  1234`` the AE ``V192.168.1.5`` maps to host ``192.168.1.5``,
port 1234.  Entries are tried in file order and the first match wins, the
names of exact entries and the prefixes of wildcard entries both compared
case-insensitively (``conquestsrv1`` finds ``CONQUESTSRV1``, which is then
the AE title called); when exact entries differ only in case, the one
spelled as the called AE is taken.  Conquest (``GetACRNema``) tries exact
names case-insensitively only in a second pass, so there an earlier
``VARSCP`` loses ``varscp`` to a later ``V*`` (host ``arscp``); here it wins.
"""

from dataclasses import dataclass, field, replace

from twisted.logger import Logger

from pacscore.codecs.syntaxes import isSupportedCode
from pacscore.config.errors import ConfigError
from pacscore.config.textfile import LineFile, lineEnding, splitLines
from pacscore.hostport import splitHostPort, unbracketed

COMMENT_MARKERS = ("#", "//", "/*", "*/")
MAX_AE = 16  # characters of an AE title


@dataclass
class Node:
    """One acrnema.map entry; ``port`` is text as it may be a wildcard (``56*``).
    ``tls``: a ``pacscore.tls.ClientTLS`` when dicom.ini's ``[DICOMTLSNodes]``
    names the AE (set by ``lookup``)."""

    ae: str
    host: str
    port: str
    compression: str = "un"
    tls: object = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        self.host = unbracketed(self.host)  # [::1] as a URL writes it: ::1


@dataclass
class _Row:
    """A line of the file.  ``head`` ends a comment begun on an earlier line,
    ``tail`` holds the other comments; both are kept when the entry is edited."""

    text: str
    node: Node | None = None
    head: str = ""
    tail: str = ""

    def keptComments(self, entryText=""):
        """The line with ``entryText`` in place of the entry, comments kept."""
        return " ".join(part for part in (self.head, entryText, self.tail) if part)


def _splitComments(text, path):
    """Per line: ``(code, head, tail)``; see ``_Row`` for head and tail."""
    result = []
    inComment = False
    start = 0
    for number, line in enumerate(splitLines(text), start=1):
        code, head, tail, i = [], "", [], 0
        if inComment:
            end = line.find("*/")
            i = len(line) if end < 0 else end + 2
            head, inComment = line[:i], end < 0
        while i < len(line):
            if inComment:
                end = line.find("*/", i)
                stop = len(line) if end < 0 else end + 2
                tail.append(line[i:stop])
                inComment, i = end < 0, stop
            elif line.startswith("/*", i):
                inComment, start = True, number
                tail.append("/*")
                i += 2
            elif line[i] == "#" or line.startswith("//", i):
                tail.append(line[i:])
                break
            else:
                code.append(line[i])
                i += 1
        result.append(("".join(code), head, "".join(tail)))
    if inComment:
        raise ConfigError(path, start, "comment '/*' is never closed by '*/'")
    return result


def _problem(fields):
    """Why ``fields`` (the words of a line) are not an entry, or None."""
    if len(fields) < 3:
        return "expected 'AE host port [compression]'"
    host, port = fields[1], fields[2]
    if not (port.isdigit() or port.endswith("*")):
        return f"port {port!r} of {fields[0]} is neither a number nor ends in '*'"
    if unbracketed(host).startswith("["):
        return f"host {host!r} of {fields[0]} is in brackets but no IP address"
    return None


def _writable(field):
    """Whether ``field`` reads back as one field: no blanks, no comment marker."""
    return bool(field) and field.split() == [field] and not any(marker in field for marker in COMMENT_MARKERS)


def _putProblem(node):
    """Why ``node`` cannot be put in the map, or None: what ``_problem``
    refuses in the file, a field that would not read back as one, an AE
    title too long to call, a compression code that means nothing here."""
    fields = [node.ae, node.host, node.port, node.compression]
    problem = _problem(fields)
    if problem:
        return problem
    unwritable = next((field for field in fields if not _writable(field)), None)
    if unwritable is not None:
        return f"{unwritable!r} is empty or holds a blank or a comment marker"
    if len(node.ae) > MAX_AE:
        return f"the AE title {node.ae} is longer than {MAX_AE} characters"
    if not isSupportedCode(node.compression):
        return f"{node.compression!r} is no compression code (un, as, j1, jl, ...)"
    return None


def _formatNode(node):
    return f"{node.ae:<17} {node.host:<16} {node.port:<9} {node.compression}"


class AcrNemaMap(LineFile):
    """The parsed acrnema.map.  Edit it with ``put``/``delete``, not through
    ``nodes``.  ``tlsNodes``: ``{AE upper case: ClientTLS}`` of dicom.ini's
    ``[DICOMTLSNodes]`` in its order, an AE ending in ``*`` matching as in
    this file (set by the loader and by ``read_ini``; kept when this file
    is read again)."""

    tlsNodes = {}
    log = Logger()
    _warned = set()  # (path, line number, text) of lines with words past the compression code

    @classmethod
    def fromString(cls, text, path="acrnema.map"):
        rows = []
        lines = splitLines(text)
        for number, (code, head, tail) in enumerate(_splitComments(text, path), start=1):
            fields = code.split()
            node = None
            if fields:
                problem = _problem(fields)
                if problem:
                    raise ConfigError(path, number, f"{problem}, got {code.strip()!r}")
                if len(fields) > 4 and (path, number, code) not in cls._warned:
                    cls._warned.add((path, number, code))
                    cls.log.warn("{path}:{line}: {extra!r} after the compression code is ignored, as Conquest "
                                 "does", path=path, line=number, extra=" ".join(fields[4:]))
                node = Node(*fields[:4])
            rows.append(_Row(lines[number - 1], node, head, tail))
        return cls(path, rows, lineEnding(text))

    @property
    def nodes(self):
        """The entries in file order (a new list each time)."""
        return [row.node for row in self._rows if row.node is not None]

    def lookup(self, ae):
        """The Node for the called AE ``ae`` with wildcards filled in, or
        None (the matching rule: see the module docstring)."""
        ae = ae.strip()
        if not ae:
            return None
        nodes = self.nodes
        for node in nodes:
            rest = matchedRest(node.ae, ae)
            if rest is None:
                continue
            if node.ae.endswith("*"):
                return self._withTLS(Node(ae, _fill(node.host, rest), _fill(node.port, rest), node.compression))
            node = next((same for same in nodes if same.ae == ae), node)
            return self._withTLS(Node(node.ae, node.host, node.port, node.compression))
        return None

    def address(self, destination):
        """``(host, port)`` a forward to ``destination`` reaches: those of
        its entry (``lookup``), or those it is written as (``host:port``,
        as the forwarder takes one not in this file); the host in lower
        case, the port a number.  None for neither (or a wildcard port)."""
        node = self.lookup(destination)
        address = (node.host, node.port) if node is not None else splitHostPort(destination)
        if address is None or not address[1].isdigit():
            return None
        return address[0].lower(), int(address[1])

    def _withTLS(self, node):
        """``node`` with the TLS of the first ``tlsNodes`` key matching its AE."""
        return replace(node, tls=next((tls for key, tls in self.tlsNodes.items()
                                       if matchedRest(key, node.ae) is not None), None))

    def tlsKeyProblem(self, key):
        """Why the ``[DICOMTLSNodes]`` AE ``key`` looks mistyped, or None.
        A key is as meant when an entry is it, or, for a key ending in
        ``*``, lies within it (an AE it matches, a wildcard at least as
        narrow); one matching only wider wildcard entries (``SECUREPAC``
        with ``S*`` but no ``SECUREPACS``) still applies to the AEs they
        find, but is most likely a typo; one matching no entry is never used."""
        nodes = self.nodes
        if any(within(node.ae, key) for node in nodes):
            return None
        what = f"no entry {key}" if not key.endswith("*") else f"no entry that {key} matches"
        wider = [node.ae for node in nodes if _overlap(key, node.ae)]
        if wider:
            return (f"{self.path} has {what}, only the wildcard entr{'ies' if len(wider) > 1 else 'y'} "
                    f"{', '.join(wider)}: check the spelling")
        return f"{self.path} has {what}, nor a wildcard entry matching it: the line is never used"

    # -- editing

    def _nodeRows(self):
        return [i for i, row in enumerate(self._rows) if row.node is not None]

    def put(self, index, node):
        """Replace entry ``index``, or append after the last entry if ``index == len(nodes)``.

        Raises ValueError, saying why, for a node the file could not hold
        or the server could not use (``_putProblem``).
        """
        problem = _putProblem(node)
        if problem is not None:
            raise ValueError(f"{node.ae} not put in {self.path}: {problem}")
        positions = self._nodeRows()
        if index == len(positions):
            at = positions[-1] + 1 if positions else len(self._rows)
            self._rows.insert(at, _Row(_formatNode(node), node))
            return
        if not 0 <= index < len(positions):
            raise IndexError(f"no entry {index} in {self.path}")
        old = self._rows[positions[index]]
        self._rows[positions[index]] = _Row(old.keptComments(_formatNode(node)), node, old.head, old.tail)

    def delete(self, index):
        """Remove entry ``index``; a comment sharing its line stays."""
        positions = self._nodeRows()
        if not 0 <= index < len(positions):
            raise IndexError(f"no entry {index} in {self.path}")
        old = self._rows[positions[index]]
        if old.head or old.tail:
            self._rows[positions[index]] = _Row(old.keptComments(), None, old.head, old.tail)
        else:
            del self._rows[positions[index]]


def matchedRest(pattern, ae):
    """What of the AE ``ae`` a ``*`` ending ``pattern`` stands for ("" when
    ``pattern`` is the AE itself), or None when ``pattern`` does not match
    ``ae``; case-insensitively (the rule of the module docstring)."""
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        return ae[len(prefix):] if ae[:len(prefix)].lower() == prefix.lower() else None
    return "" if pattern.lower() == ae.lower() else None


def within(narrow, wide):
    """Whether every AE the pattern ``narrow`` matches, ``wide`` matches
    too (both may end in ``*``: an acrnema.map entry, a ``[DICOMTLSNodes]``
    key)."""
    if narrow.endswith("*"):
        return wide.endswith("*") and matchedRest(wide, narrow[:-1]) is not None
    return matchedRest(wide, narrow) is not None


def _overlap(first, second):
    """Whether some AE matches both patterns (``matchedRest``)."""
    if first.endswith("*") and second.endswith("*"):
        return matchedRest(first, second[:-1]) is not None or matchedRest(second, first[:-1]) is not None
    if first.endswith("*"):
        first, second = second, first
    return matchedRest(second, first) is not None


def _fill(pattern, rest):
    """``pattern`` with a trailing ``*`` replaced by ``rest``."""
    return pattern[:-1] + rest if pattern.endswith("*") else pattern
