"""Converter conditions (manual 7.2): the ``if...`` family and ``between``.

Each guards the statement or block after it (see ``script``).  Their
arguments are double-quoted strings, expanded when they run.  Matching
(``ifmatch``) is case-insensitive and allows ``x*``, ``*x`` and ``*x*``;
numbers are integers, read as C's ``atoi`` does (a leading integer, else
0), as Conquest compares them: ``ifnumgreater "5.5", "5"`` does not hold.
``between "9", "17"`` holds from 9:00 to 16:59 local time, and wraps
midnight when the first hour is the larger (``between "22", "6"``).
"""

import time

from pacscore.converters.arguments import expanded, quotedStrings
from pacscore.converters.command import Command
from pacscore.storage.filenames import atoi


def matches(string, pattern):
    """Conquest's ``ifmatch``: ``pattern`` is ``x*``, ``*x``, ``*x*`` or exact."""
    string, pattern = string.lower(), pattern.lower()
    if len(pattern) >= 2 and pattern.startswith("*") and pattern.endswith("*"):
        return pattern[1:-1] in string
    if pattern.endswith("*"):
        return string.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return string.endswith(pattern[1:])
    return string == pattern


class Condition(Command):
    """A test of ``arity`` quoted strings; ``test`` gets them expanded."""

    condition = True
    arity = 2

    def parse(self, arguments, where):
        return quotedStrings(arguments, where, self.arity)

    def run(self, arguments, context):
        return self.test(*expanded(arguments, context))


class IfNotEmpty(Condition):
    name = "ifnotempty"
    arity = 1

    def test(self, value):
        return value != ""


class IfEmpty(Condition):
    name = "ifempty"
    arity = 1

    def test(self, value):
        return value == ""


class IfEqual(Condition):
    name = "ifequal"

    def test(self, first, second):
        return first == second


class IfNotEqual(Condition):
    name = "ifnotequal"

    def test(self, first, second):
        return first != second


class IfMatch(Condition):
    name = "ifmatch"

    def test(self, string, pattern):
        return matches(string, pattern)


class IfNotMatch(Condition):
    name = "ifnotmatch"

    def test(self, string, pattern):
        return not matches(string, pattern)


class IfNumEqual(Condition):
    name = "ifnumequal"

    def test(self, first, second):
        return atoi(first) == atoi(second)


class IfNumNotEqual(Condition):
    name = "ifnumnotequal"

    def test(self, first, second):
        return atoi(first) != atoi(second)


class IfNumGreater(Condition):
    name = "ifnumgreater"

    def test(self, first, second):
        return atoi(first) > atoi(second)


class IfNumLess(Condition):
    name = "ifnumless"

    def test(self, first, second):
        return atoi(first) < atoi(second)


class Between(Condition):
    """``between "9", "17"``: the current local hour (of the services'
    ``wallClock``) is in [9, 17)."""

    name = "between"

    def run(self, arguments, context):
        hour = time.localtime(context.services.wallClock()).tm_hour
        start, end = (atoi(value) for value in expanded(arguments, context))
        if start <= end:
            return start <= hour < end
        return hour >= start or hour < end
