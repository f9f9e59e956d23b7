"""Arguments of converter commands: double-quoted strings.

Conquest's commands take their strings in double quotes, several separated
by commas (``ifequal "%V0008,0020[0,3]", "2002"``); the quotes are needed
because the strings may hold commas, semicolons and braces.  There is no
escape for a double quote inside one.  The strings are kept unexpanded
when a line is parsed; ``expanded`` fills in their %-variables when the
command runs.
"""

from pacscore.converters.context import ConverterSyntaxError


def leadingString(text, where):
    """``(string, rest)`` for ``text`` that starts with a double-quoted
    string; raises ConverterSyntaxError naming ``where`` otherwise."""
    if not text.startswith('"'):
        raise ConverterSyntaxError(f"{where}: expected a double-quoted string, got {text!r}")
    end = text.find('"', 1)
    if end < 0:
        raise ConverterSyntaxError(f"{where}: unterminated string {text!r}")
    return text[1:end], text[end + 1:]


def quotedStrings(text, where, count):
    """The ``count`` comma-separated double-quoted strings of ``text``."""
    strings = []
    rest = text.strip()
    while True:
        string, rest = leadingString(rest, where)
        strings.append(string)
        rest = rest.lstrip()
        if not rest:
            break
        if not rest.startswith(","):
            raise ConverterSyntaxError(f"{where}: expected ',' before {rest!r}")
        rest = rest[1:].lstrip()
    if len(strings) != count:
        raise ConverterSyntaxError(
            f"{where}: expected {count} quoted string{'s' if count > 1 else ''}, got {len(strings)}")
    return tuple(strings)


def expanded(strings, context):
    """``strings`` with their %-variables filled in for ``context``."""
    return [context.expand(string) for string in strings]
