"""WebUsers files made by Apache's htpasswd, for the tests."""

import subprocess


def htpasswd(path, user, password, create=False):
    """Add ``user`` to the htpasswd file ``path`` as Apache's tool does (bcrypt)."""
    subprocess.run(["htpasswd", "-bB" + ("c" if create else ""), path, user, password], check=True,
                   capture_output=True)


def writeUsers(path, users):
    """Make the htpasswd file ``path`` of ``users`` (``{user: password}``)."""
    for n, (user, password) in enumerate(users.items()):
        htpasswd(path, user, password, create=n == 0)
