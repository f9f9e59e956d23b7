"""The case fold of C-FIND's case-insensitive matching of text outside ASCII
(PN keys, and search boxes' text) where the database's own ``lower()`` does
not fold it (SQLite): applied alike to the stored text, in SQL through the
SQLite driver's ``pacs_casefold``, and to the key.

It keeps the length of the text, character by character, so that a ``?``
wildcard (SQL ``_``) still covers one character: Python's full case fold
turns ``ß`` into ``ss`` and ``İ`` into ``i`` and a combining dot, and
``Stra?e`` never matched ``Straße``.  A character whose fold is longer
than one character becomes its lower case when that is one character
(``ẞ`` to ``ß``), else stays as it is (``ß``, ``İ``): as the ``lower()``
of PostgreSQL and MariaDB, ``STRASSE`` does not match ``Straße``.
"""


def _foldCharacter(character):
    folded = character.casefold()
    if len(folded) == 1:
        return folded
    lowered = character.lower()
    return lowered if len(lowered) == 1 else character


def caseFolded(text):
    """``text`` case-folded, one character for each of its characters."""
    folded = text.casefold()
    if len(folded) == len(text):  # no character folded into more than one
        return folded
    return "".join(map(_foldCharacter, text))
