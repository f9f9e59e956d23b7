"""Which dicom.ini settings are secrets, for what shows or hands out its
values to those who may not see them (the web's ``showconfig``, sandboxed
Lua scripts): a key naming a secret or a password (``ControlSecret``,
``Password`` of the SQL server ...) is one, and a value that is a URL with
a password (``SQLServer = postgresql://user:password@host/db``) has the
password replaced by ``***``."""

import re

from pacscore.db.drivers import redacted

_SECRET_KEY = re.compile(r"secret|password", re.IGNORECASE)


def isSecret(key):
    """Whether dicom.ini's ``key`` holds a secret."""
    return _SECRET_KEY.search(key) is not None


def publicValue(key, value):
    """``value`` of dicom.ini's ``key`` as one who may not see secrets sees
    it: ``***`` for a secret key's, a URL's password hidden."""
    return "***" if isSecret(key) else redacted(value)


def publicItems(items):
    """``[(key, value), ...]`` without the secret keys, passwords in URLs hidden."""
    return [(key, redacted(value)) for key, value in items if not isSecret(key)]
