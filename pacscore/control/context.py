"""What a control command gets: the running archive and a way to talk back.

``ControlContext`` is made per request by the control protocol: the
``Archive`` (configuration, index, stores, queues, counters), the reactor,
``progress(text)`` to report on a long command while it runs, the peer's
address for log lines, ``quit()`` to stop the server in order,
``html``: whether the output goes into a web page (listings escape their
rows' values), ``sandboxed``: whether a sandboxed Lua script asked
(only ``readOnly`` commands run, and they write no file and show no
secret of dicom.ini), and ``secretsHiddenFrom``: who asked, when they may
not see dicom.ini's secrets either (the web's scripted pages; None: they
may, "sandboxed Lua scripts" when sandboxed).
``CommandError`` is how a command refuses: the client prints the message
and exits non-zero.
"""

import re

from twisted.logger import Logger


class CommandError(Exception):
    """A control command that cannot be carried out (bad arguments, nothing
    found, a failure); ``str(error)`` is shown to the operator, after the
    ``output`` lines of what the command did do (a folder import's)."""

    def __init__(self, message, output=None):
        super().__init__(message)
        self.output = output


class NotDICOM(CommandError):
    """A file given as a DICOM object that is none (``what`` it is instead)."""

    def __init__(self, path, what):
        super().__init__(f"{path} is {what}")
        self.what = what


def notUTF8(error):
    """A ``CommandError`` for ``error`` when it is the failure of an argument
    holding bytes that are not UTF-8 (taken as they are, for a file name;
    surrogate escapes) where only text goes (a database query), else None."""
    if isinstance(error, UnicodeEncodeError) and "\udc80" <= error.object[error.start] <= "\udcff":
        shown = error.object[error.start:error.end].encode("utf-8", "backslashreplace").decode("ascii")
        return CommandError(f"an argument holds bytes that are not UTF-8 ({shown}): only a file name may")
    return None


def checkUTF8(*texts):
    """``notUTF8``'s CommandError when one of ``texts`` (arguments going into
    a configuration file) holds bytes that are not UTF-8."""
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise notUTF8(e) from None


# A conversion (width and precision captured) or a literal ``%%``.
_CONVERSION = re.compile(r"%%|%[-#0 +]*([0-9]*)(?:\.([0-9]*))?[hlL]?[diouxXeEfFgGcrsa]")
MAX_WIDTH = 1024
MAX_CONVERSIONS = 64  # Conquest's own pages use fewer than ten


def formatted(fmt, *values, repeat=False):
    """Conquest's optional ``fmt`` argument: a printf-style template for one
    output line (``%s``, ``%d`` ..., ``\\n`` and ``\\t`` escapes) taking the
    first values, with ``repeat`` the values again from the first as often
    as it has conversions left (as Conquest passes a listing's row, so that
    its templates skip values with ``%0.0s`` and show one twice); without
    one, the values joined by spaces. See ``Format``."""
    if not fmt:
        return " ".join(str(v) for v in values)
    return Format(fmt).apply(values, repeat)


class Format:
    """A ``fmt`` checked once, to be applied to many rows: widths and
    precisions at most ``MAX_WIDTH``, conversions at most
    ``MAX_CONVERSIONS`` (else CommandError).  ``given``: the format as
    the user wrote it, for the messages (a lister's, with the prefix it
    took off), when it is not ``fmt``."""

    def __init__(self, fmt, given=None):
        self.fmt = fmt if given is None else given
        self.template = fmt.replace("\\n", "\n").replace("\\t", "\t")
        conversions = [match for match in _CONVERSION.finditer(self.template) if match.group() != "%%"]
        if len(conversions) > MAX_CONVERSIONS:
            raise CommandError(f"bad format {self.fmt[:80]!r}...: at most {MAX_CONVERSIONS} conversions")
        if any(int(number) > MAX_WIDTH for match in conversions for number in match.groups() if number):
            raise CommandError(f"bad format {self.fmt!r}: widths and precisions are at most {MAX_WIDTH}")
        self.conversions = len(conversions)
        self._spans = [match.span() for match in conversions]  # where in ``template`` each conversion is

    def apply(self, values, repeat=False, made=None):
        """The line of ``values`` (see ``formatted``); with ``made``, each
        conversion goes in as ``made(conversion, value, start)``, which
        applies the ``conversion`` (its text, ``%-12.7s``, width and
        precision counting the value) to ``value`` or to what it stands for
        (``start``: where in ``template`` the conversion is)."""
        try:
            if repeat and values:
                values = list(values) * -(-self.conversions // len(values))
            if made is None:
                return self.template % tuple(values[:self.conversions])
            if len(values) < self.conversions:
                raise TypeError("not enough arguments for format string")
            pieces, end = [], 0
            for value, (start, stop) in zip(values, self._spans):
                pieces += [self.template[end:start] % (), made(self.template[start:stop], value, start)]
                end = stop
            return "".join(pieces) + self.template[end:] % ()
        except (TypeError, ValueError, OverflowError) as e:
            raise CommandError(f"bad format {self.fmt!r}: {e}") from e


class ControlContext:
    """See the module docstring."""

    log = Logger()

    def __init__(self, archive, reactor, progress=None, peer="", quit=None, html=False, sandboxed=False,
                 secretsHiddenFrom=None):
        self.archive = archive
        self.reactor = reactor
        self.peer = peer
        self.html = html
        self.sandboxed = sandboxed
        self.secretsHiddenFrom = "sandboxed Lua scripts" if sandboxed else secretsHiddenFrom
        self._progress = progress
        self._quit = quit

    def progress(self, text):
        """Tell the client how a long command is getting on."""
        if self._progress is not None:
            self._progress(text)

    def progressFromThread(self, text):
        """``progress`` for a command's work in a worker thread."""
        self.reactor.callFromThread(self.progress, text)

    def quit(self):
        """Stop the server in order (see the control service); a Deferred."""
        if self._quit is None:
            raise CommandError("quit is not available here")
        return self._quit()
