"""Values as log lines and error messages show them: a long one (a
500,000-character HL7 field, a 60,000-character Modality) cut to its first
characters and its length, so that one bad value cannot flood the log."""

SHOWN = 64  # characters of a long value shown


def shown(value, size=SHOWN):
    """``repr(value)``; for a value longer than ``size`` characters, that
    of its first ``size`` followed by ``... (N characters)``."""
    if len(value) <= size:
        return repr(value)
    return f"{value[:size]!r}... ({len(value)} characters)"
