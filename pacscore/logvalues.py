"""Values as log lines and error messages show them: a long one (a
500,000-character HL7 field, a 60,000-character Modality) cut to its first
characters and its length, and a long list (the thousands of orders of
one HL7 message) to its first items and their count, so that one bad
value cannot flood the log."""

from collections import Counter

SHOWN = 64  # characters of a long value shown
NAMED = 10  # items of a long list named; the others are counted


def shown(value, size=SHOWN):
    """``repr(value)``; for a value longer than ``size`` characters, that
    of its first ``size`` followed by ``... (N characters)``."""
    if len(value) <= size:
        return repr(value)
    return f"{value[:size]!r}... ({len(value)} characters)"


def named(items, noun, kinds=None, size=NAMED):
    """``items`` (texts) joined by ``, ``; of more than ``size``, the first
    ``size`` and a count of the others: ``A1, A2 and 3 more orders``, by
    kind when ``kinds`` gives one for each item (``... and 3 more orders
    (1 absent, 2 inserted)``)."""
    items = list(items)
    text = ", ".join(items[:size])
    if len(items) > size:
        text += f" and {len(items) - size} more {noun}"
        if kinds is not None:
            counts = Counter(list(kinds)[size:])
            text += " (" + ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items())) + ")"
    return text
