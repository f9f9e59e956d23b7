"""How many rows a list page shows: the first ``max=N`` (``MOST_ROWS`` by
default).  One more than that is asked for (``askedRows``: an SQL LIMIT,
or the C-FIND matches read before a C-CANCEL), so that a page can say it
was cut without reading the rest of a large archive."""

MOST_ROWS = 1000  # rows of a list page unless max= says otherwise


def mostRows(parameters):
    """The rows a list page shows: ``max``, MOST_ROWS when not given."""
    return parameters.number("max", MOST_ROWS, low=1, high=10**7)


def askedRows(parameters):
    """The rows a list page asks for: one more than it shows."""
    return mostRows(parameters) + 1


def shownRows(found, parameters):
    """The first ``mostRows`` of ``found``."""
    return found[:mostRows(parameters)]


def counted(found, parameters):
    """How many rows ``found`` holds: ``12``, or ``more than 5`` when it holds more than are shown."""
    most = mostRows(parameters)
    return f"more than {most}" if len(found) > most else f"{len(found)}"


def cutNote(found, parameters):
    """What a caption adds when ``found`` holds more rows than are shown."""
    most = mostRows(parameters)
    return f" (the first {most} shown; max=N shows more)" if len(found) > most else ""
