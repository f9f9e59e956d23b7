"""Person names as the index matches them: without what PS3.5 6.2 lets a
PN value leave out, the trailing empty components of each component group
(``Doe^John^^^``) and the trailing empty groups (``Doe^John=``), so that a
key and a stored name match whether they spell them or not; in Python for
a key, in SQL for a stored name (SQLite, PostgreSQL and MySQL alike).
"""

from sqlalchemy import func

from pacscore.db.sqlfunctions import trimTrailing

# A component group holds at most five components: at most four "^" end one.
MAX_TRAILING_CARETS = 4
# What a spelling of a name may hold beyond its personName: the "^"s ending its three groups, two "="s.
CUT_SLACK = 3 * MAX_TRAILING_CARETS + 2


def personName(value):
    """A PN value without the trailing empty components of each component
    group and without trailing empty groups: ``Doe^John^^^=`` is ``Doe^John``."""
    groups = [group.rstrip("^") for group in value.split("=")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def storedPersonName(column):
    """``personName`` of the PN text ``column`` in SQL: each "^" before a
    "=" dropped (as many times as a group may end with one), then the
    trailing "^"s and "="s."""
    for _ in range(MAX_TRAILING_CARETS):
        column = func.replace(column, "^=", "=")
    return trimTrailing(trimTrailing(column, "^"), "=")
