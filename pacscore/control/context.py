"""What a control command gets: the running archive and a way to talk back.

``ControlContext`` is made per request by the control protocol: the
``Archive`` (configuration, index, stores, queues, counters), the reactor,
``progress(text)`` to report on a long command while it runs, the peer's
address for log lines, and ``quit()`` to stop the server in order.
``CommandError`` is how a command refuses: the client prints the message
and exits non-zero.
"""

import re

from twisted.logger import Logger


class CommandError(Exception):
    """A control command that cannot be carried out (bad arguments, nothing
    found, a failure); ``str(error)`` is shown to the operator."""


_CONVERSION = re.compile(r"%[-#0 +]*[0-9]*(?:\.[0-9]+)?[sdiuxXfgeEc]")


def formatted(fmt, *values):
    """Conquest's optional ``fmt`` argument: a printf-style template for one
    output line (``%s``, ``%d`` ..., ``\\n`` and ``\\t`` escapes) taking the
    first values; without one, the values joined by spaces."""
    if not fmt:
        return " ".join(str(v) for v in values)
    template = fmt.replace("\\n", "\n").replace("\\t", "\t")
    try:
        return template % tuple(values[:len(_CONVERSION.findall(template))])
    except (TypeError, ValueError) as e:
        raise CommandError(f"bad format {fmt!r}: {e}") from e


class ControlContext:
    """See the module docstring."""

    log = Logger()

    def __init__(self, archive, reactor, progress=None, peer="", quit=None):
        self.archive = archive
        self.reactor = reactor
        self.peer = peer
        self._progress = progress
        self._quit = quit

    def progress(self, text):
        """Tell the client how a long command is getting on."""
        if self._progress is not None:
            self._progress(text)

    def quit(self):
        """Stop the server in order (see the control service); a Deferred."""
        if self._quit is None:
            raise CommandError("quit is not available here")
        return self._quit()
