"""How an error of the index database reads in a log line or a comment."""


def databaseMessage(error):
    """The database's own message of ``error`` on one line: a SQLAlchemy
    error's DBAPI error (``orig``), without the SQL and its parameters."""
    return " ".join(str(getattr(error, "orig", None) or error).split())
