"""Command lines for the shell from converter templates (``system``,
export converter programs, ``process with``, ``process ... by``):
``shellCommand(text, context)``.

The template's own text is shell syntax, as the administrator wrote it; a
%-variable's value (a patient name or ID that came over the network) is
data: it is quoted for where it stands in that text, so that it reaches the
program as it is, whatever it holds.  Bare, it is one quoted word
(``shlex.quote``; an empty value is nothing, as before); inside ``"..."``
its ``$``, backquote, ``\\`` and ``"`` are escaped; inside ``'...'`` a
quote becomes ``'\\''``; in a ``#`` comment, line breaks become spaces.
``$(...)``, ``(...)`` and backquotes nest: what stands inside them is bare
again (inside backquotes, escaped once more for the shell's first pass).  A backslash just before a variable stays a backslash.
"""

import re
import shlex

from pacscore.converters.variables import pieces

BARE, DOUBLE, SINGLE, COMMENT = "bare", "double", "single", "comment"
_DOUBLE_SPECIAL = re.compile(r'([$`"\\])')
_BACKQUOTED_SPECIAL = re.compile(r"([$`\\])")
_WORD_BREAKS = frozenset(" \t\n;&|()<>")


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
        for _ in range(sum(closer == "`" for _, closer in self.stack)):
            quoted = _BACKQUOTED_SPECIAL.sub(r"\\\1", quoted)  # the shell's first pass over `...`
        return quoted

    def _quoted(self, value):
        self.wordStart = self.state == BARE  # conservative: 'value'# may be taken for a comment
        prefix = "\\" if self.escaped else ""
        self.escaped = False
        if self.state == SINGLE:
            return value.replace("'", "'\\''")
        if self.state == COMMENT:
            return value.replace("\r", " ").replace("\n", " ")
        if self.state == DOUBLE:
            return prefix + _DOUBLE_SPECIAL.sub(r"\\\1", value)
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
        elif text.startswith("$(", position):
            self.stack.append((BARE, ")"))
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
            self.stack.append((BARE, ")"))
        elif character == ")" and closer == ")":
            self.stack.pop()
        elif character == "#" and self.wordStart:
            self.stack.append((COMMENT, "\n"))
        self.wordStart = self.state == BARE and text[after - 1] in _WORD_BREAKS
        return after
