"""The case fold of C-FIND's case-insensitive matching of text outside ASCII
(PN keys, and search boxes' text) where the database's own ``lower()`` does
not fold it (SQLite): applied alike to the stored text, in SQL through the
SQLite driver's ``pacs_casefold``, and to the key.

It keeps the length of the text, character by character, so that a ``?``
wildcard (SQL ``_``) still covers one character: Python's full case fold
turns ``ß`` into ``ss`` and ``İ`` into ``i`` and a combining dot, and
``Stra?e`` never matched ``Straße``.  A character whose fold is longer
than one character becomes the first character of its lower case: ``ẞ``
``ß``, ``ß`` itself, ``İ`` ``i`` (its lower case is ``i`` and a combining
dot): as the ``lower()`` of PostgreSQL and MariaDB, ``STRASSE`` does not
match ``Straße`` and ``ilhan`` matches ``İLHAN``.

SQLite's own ``lower()``, which ASCII keys are matched with, leaves every
letter outside ASCII as it is: ``INTO_ASCII`` are those that fold into an
ASCII letter.
"""

# The characters outside ASCII that caseFolded makes an ASCII letter: İ, ſ (long s), K (Kelvin sign).
INTO_ASCII = {"\u0130": "i", "\u017f": "s", "\u212a": "k"}


def _foldCharacter(character):
    folded = character.casefold()
    return folded if len(folded) == 1 else character.lower()[0]


def caseFolded(text):
    """``text`` case-folded, one character for each of its characters."""
    folded = text.casefold()
    if len(folded) == len(text):  # no character folded into more than one
        return folded
    return "".join(map(_foldCharacter, text))
