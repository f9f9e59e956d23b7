"""Command lines for the shell from converter templates (``system``,
export converter programs, ``process with``, ``process ... by``):
``shellCommand(text, context)``.

The template's own text is shell syntax, as the administrator wrote it; a
%-variable's value (a patient name or ID that came over the network) is
data: it is quoted for where it stands in that text, so that it reaches the
program as it is, whatever it holds.  Bare, it is one quoted word
(``shlex.quote``; an empty value is nothing, as before); inside ``"..."``
its ``$``, backquote, ``\\`` and ``"`` are escaped; inside ``'...'`` a
quote becomes ``'\\''``; in a ``#`` comment it is quoted as if bare, its line
breaks made spaces.  ``$(...)``, ``(...)`` and backquotes nest: what stands
inside them is bare again (inside backquotes, escaped once more for the
shell's first pass).  A backslash just before a variable stays a backslash.

Inside ``${...}`` (where quotes nest again) and ``$((...))`` the shell
expands once more, so a value anywhere within them keeps only
``[A-Za-z0-9._,:/=+@^ -]``, any other character made ``_``; one standing
directly in ``$((...))`` must be an integer, anything else becomes ``0``.
"""

import re
import shlex

from twisted.logger import Logger

from pacscore.converters.variables import pieces

BARE, DOUBLE, SINGLE, COMMENT = "bare", "double", "single", "comment"
PARAMETER, ARITHMETIC = "parameter", "arithmetic"  # ${...}, $((...))
_INTEGER = re.compile(r"-?[0-9]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._,:/=+@^ -]")
_DOUBLE_SPECIAL = re.compile(r'([$`"\\])')
_BACKQUOTED_SPECIAL = re.compile(r"([$`\\])")
_WORD_BREAKS = frozenset(" \t\n;&|()<>")
log = Logger()


def shellCommand(text, context):
    """``text`` with its %-variables expanded for ``context``, each value
    quoted for the shell where it stands."""
    quoting = _Quoting()
    out = []
    for piece, letter in pieces(text, context):
        out.append(quoting.quote(piece) if letter else piece)
        if not letter:
            quoting.feed(piece)
    return "".join(out)


class _Quoting:
    """Where the template's own text has got to, as the shell reads it: a
    stack of ``(state, closing character)``."""

    def __init__(self):
        self.stack = [(BARE, None)]
        self.escaped = False    # the text so far ends with an unquoted backslash
        self.wordStart = True   # a '#' here would start a comment

    @property
    def state(self):
        return self.stack[-1][0]

    def quote(self, value):
        """``value`` as data where the text has got to."""
        quoted = self._quoted(value)
        if quoted:
            self.wordStart = False  # 'value'# is one word to the shell, no comment
        for _ in range(sum(closer == "`" for _, closer in self.stack)):
            quoted = _BACKQUOTED_SPECIAL.sub(r"\\\1", quoted)  # the shell's first pass over `...`
        return quoted

    def _quoted(self, value):
        prefix = "\\" if self.escaped else ""
        self.escaped = False
        states = [state for state, _ in self.stack]
        state = next(state for state in reversed(states) if state != PARAMETER)  # what ${...} stands in
        if state == ARITHMETIC and not _INTEGER.fullmatch(value):
            log.warn("a value in $((...)) of a shell command is no integer: 0 used instead")
            value = "0"
        if PARAMETER in states or ARITHMETIC in states:
            value = _UNSAFE.sub("_", value)
        if state == SINGLE:
            return value.replace("'", "'\\''")
        if state == COMMENT:
            return shlex.quote(value.replace("\r", " ").replace("\n", " "))
        if state == DOUBLE:
            return prefix + _DOUBLE_SPECIAL.sub(r"\\\1", value)
        if state == ARITHMETIC:
            return prefix + value
        return prefix + shlex.quote(value) if value else prefix

    def feed(self, text):
        """Follow the template's own ``text``."""
        position = 0
        while position < len(text):
            position = self._step(text, position)

    def _step(self, text, position):
        character = text[position]
        after = position + 1
        state, closer = self.stack[-1]
        if self.escaped:
            self.escaped = False
        elif state == SINGLE:
            if character == "'":
                self.stack.pop()
        elif state == COMMENT:
            if character == "\n":
                self.stack.pop()
        elif character == "\\":
            self.escaped = True
        elif text.startswith("$((", position):
            self.stack.append((ARITHMETIC, "))"))
            after += 2
        elif text.startswith("$(", position):
            self.stack.append((BARE, ")"))
            after += 1
        elif text.startswith("${", position):
            self.stack.append((PARAMETER, "}"))
            after += 1
        elif character == "`":
            if closer == "`":
                self.stack.pop()
            else:
                self.stack.append((BARE, "`"))
        elif state == DOUBLE:
            if character == '"':
                self.stack.pop()
        elif character == "'":
            self.stack.append((SINGLE, "'"))
        elif character == '"':
            self.stack.append((DOUBLE, '"'))
        elif character == "(":
            self.stack.append((ARITHMETIC if state == ARITHMETIC else BARE, ")"))
        elif text.startswith("))", position) and closer == "))":
            self.stack.pop()
            after += 1
        elif character == closer:  # ")" or "}"
            self.stack.pop()
        elif character == "#" and self.wordStart:
            self.stack.append((COMMENT, "\n"))
        self.wordStart = self.state == BARE and text[after - 1] in _WORD_BREAKS
        return after
