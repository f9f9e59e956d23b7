"""The process's limit of open files (RLIMIT_NOFILE), raised at start-up
to the most the system lets it have: every DICOM association, web request
and stored file holds one, and the usual soft limit of 1024 is soon
reached by a busy server, or by a peer opening connections it never
uses."""

import resource

from twisted.logger import Logger

log = Logger()

PLENTY = 1 << 16  # what is asked for when the hard limit is unlimited


def openFileLimit():
    """The number of files the process may open (its soft limit)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raiseFileLimit():
    """Raise the soft limit of open files to the hard one, log the
    figure, and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, PLENTY) if hard == resource.RLIM_INFINITY else hard
    if wanted != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as e:
            log.warn("open files: the limit stays {soft}, raising it to {wanted} failed: {error}",
                     soft=soft, wanted=wanted, error=e)
            return soft
    log.info("open files: at most {limit}{raised}", limit=wanted,
             raised=f" (raised from {soft})" if wanted != soft else "")
    return wanted
