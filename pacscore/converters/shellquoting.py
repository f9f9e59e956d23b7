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
inside them is bare again.  A backquoted body is read as the shell reads
it: first its ``\\$``, ``\\```, ``\\\\`` (and ``\\"`` directly inside
``"..."``) lose their backslash, then the result is parsed afresh; a value
there is quoted for that inner parse and escaped for the first pass.  Where
the shells differ on that first pass (``\\"`` in backquotes inside
``"${...}"`` or ``$((...))``: dash strips the backslash, bash keeps it) a
value after such a ``\\"`` is left out.  A backslash just before a variable
stays a backslash; a ``$`` just before one is kept apart from it (``''`` or
``""`` between), so that it starts no ``$(...)``, bash's ``$'...'`` or an
expansion.  Inside ``$'...'`` a value keeps only the characters below; after
a backslash there (bash: an escape; dash: a backslash) it is left out, and
so is one after ``$$(`` (the process ID, but bash also parses a ``$(`` there).

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
ANSI = "ansi"  # bash's $'...'; to dash, $ and '...'
PARAMETER, ARITHMETIC = "parameter", "arithmetic"  # ${...}, $((...))
_INTEGER = re.compile(r"-?[0-9]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._,:/=+@^ -]")
_DOUBLE_SPECIAL = re.compile(r'([$`"\\])')
_BACKQUOTED_SPECIAL = re.compile(r"([$`\\])")
_CERTAIN_FIRST_PASS = ([], [DOUBLE], [PARAMETER], [PARAMETER, DOUBLE])  # frames above the nearest bare one
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
        self.backquoted = None  # the _Backquoted body the text is in
        self.ambiguous = False  # bash and dash read the text so far differently
        self.afterDollar = False  # the text so far ends with a $ that $'...', $(...) would follow

    @property
    def state(self):
        return self.stack[-1][0]

    def quote(self, value, outerStates=()):
        """``value`` as data where the text has got to."""
        states = [*outerStates, *(state for state, _ in self.stack)]
        if self.ambiguous:
            log.warn("a value in a shell command after text that bash and dash read differently: left out")
            return ""
        body = self.backquoted
        if body is None:
            quoted = self._quoted(value, states)
            if quoted:
                self.wordStart = False  # 'value'# is one word to the shell, no comment
            return quoted
        prefix = ""
        if body.pending:  # the template's backslash stays one: \\ in the first pass
            body.pending = False
            body.inner.feed("\\")
            prefix = "\\"
        return prefix + body.escape(body.inner.quote(value, states))

    def _quoted(self, value, states):
        prefix = "\\" if self.escaped else ""
        self.escaped = False
        afterDollar, self.afterDollar = self.afterDollar, False
        state = next(state for state in reversed(states) if state != PARAMETER)  # what ${...} stands in
        if state == ARITHMETIC and not _INTEGER.fullmatch(value):
            log.warn("a value in $((...)) of a shell command is no integer: 0 used instead")
            value = "0"
        if PARAMETER in states or ARITHMETIC in states or state == ANSI:
            value = _UNSAFE.sub("_", value)
        if state == SINGLE:
            return value.replace("'", "'\\''")
        if state == COMMENT:
            return shlex.quote(value.replace("\r", " ").replace("\n", " "))
        if afterDollar and state in (BARE, DOUBLE):
            prefix = "''" if state == BARE else '""'  # $ and the value apart: no $'...', $(...), $HOME
        if state == DOUBLE:
            return prefix + _DOUBLE_SPECIAL.sub(r"\\\1", value)
        if state in (ARITHMETIC, ANSI):
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
        dollar = character == "$" and not self.escaped and state in (BARE, DOUBLE, PARAMETER)
        self.afterDollar = False
        if self.backquoted is not None:
            after, closed = self.backquoted.take(text, position)
            if closed:
                self.backquoted = None
            self.wordStart = False
            return after
        if self.escaped:
            self.escaped = False
        elif state == SINGLE:
            if character == "'":
                self.stack.pop()
        elif state == COMMENT:
            if character == "\n":
                self.stack.pop()
        elif state == ANSI:
            if character == "\\":  # bash: an escape; dash: a backslash, so \' ends the quote there only
                self.escaped = True
                self.ambiguous = self.ambiguous or text.startswith("'", after)
            elif character == "'":
                self.stack.pop()
        elif character == "\\":
            self.escaped = True
        elif text.startswith("$$", position):  # the shell's process ID
            after += 1
            self.ambiguous = self.ambiguous or text.startswith("(", after)  # bash reads $( in "$$(" too
        elif text.startswith("$((", position):
            self.stack.append((ARITHMETIC, "))"))
            after += 2
        elif text.startswith("$(", position):
            self.stack.append((BARE, ")"))
            after += 1
        elif text.startswith("$'", position) and state != DOUBLE:
            self.stack.append((ANSI, "'"))
            after += 1
        elif text.startswith("${", position):
            self.stack.append((PARAMETER, "}"))
            after += 1
        elif character == "`":
            self.backquoted = _Backquoted(self.stack)
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
        self.afterDollar = dollar and after == position + 1
        return after


class _Backquoted:
    """A backquoted body as the shell's first pass over it hands it on to
    its own parse (``inner``)."""

    def __init__(self, stack):
        states = [state for state, _ in stack]
        above = states[len(states) - states[::-1].index(BARE):]  # the frames above the nearest bare one
        self.stripsQuote = states[-1] == DOUBLE  # \" loses its backslash (bash and dash agree where certain)
        self.quoteCertain = above in _CERTAIN_FIRST_PASS
        self.pending = False    # the body so far ends with a backslash
        self.inner = _Quoting()

    def take(self, text, position):
        """Follow the body in ``text`` from ``position`` to its closing
        backquote or the end of ``text``; where that stopped, and whether
        the body closed."""
        handed = []
        while position < len(text):
            character = text[position]
            position += 1
            if self.pending:
                self.pending = False
                if character == '"':
                    self.inner.ambiguous = self.inner.ambiguous or not self.quoteCertain
                    handed.append('"' if self.stripsQuote else '\\"')
                else:
                    handed.append(character if character in "$`\\" else "\\" + character)
            elif character == "\\":
                self.pending = True
            elif character == "`":
                self.inner.feed("".join(handed))
                return position, True
            else:
                handed.append(character)
        self.inner.feed("".join(handed))
        return position, False

    def escape(self, text):
        """``text`` such that the first pass hands it on as it is."""
        special = _DOUBLE_SPECIAL if self.stripsQuote else _BACKQUOTED_SPECIAL
        return special.sub(r"\\\1", text)
