"""Control commands run in-process, as the control port runs them, for web
pages and converters (Lua's ``servercommand``): ``runCommand`` (a command
object and its arguments) and ``commandOutput`` (a ``--name:arguments``
line, its output as text; with ``html`` the values its listing rows show
are HTML-escaped for a page, see ``pacscore.control.output``).  ``peer``
says in the log who asked.  Both return Deferreds; call them in the
reactor."""

from twisted.internet import defer

from pacscore.control.context import CommandError, ControlContext
from pacscore.control.protocol import parseCommand


WEB_PAGE = "web page"


def runCommand(archive, command, arguments, html=False, peer=WEB_PAGE):
    """Deferred of what ``command`` answers to ``arguments``; CommandError when it refuses."""
    context = ControlContext(archive, archive.reactor, peer=peer, html=html)
    return defer.maybeDeferred(command.run, arguments, context)


def _text(output):
    return output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output or "")


def _failed(failure, name):
    failure.trap(CommandError)
    raise CommandError(f"--{name} failed: {failure.value}")


def commandOutput(archive, commands, line, html=False, peer=WEB_PAGE):
    """Deferred of the text a ``--name:arguments`` line's command (of the
    ``CommandRegistry`` ``commands``) outputs; BadRequest for a line that is
    no command, CommandError for an unknown one or a refusal."""
    name, arguments = parseCommand(line)
    command = commands.lookup(name)
    if command is None:
        return defer.fail(CommandError(f"unknown command --{name}"))
    return runCommand(archive, command, arguments, html, peer).addCallbacks(_text, _failed, errbackArgs=(name,))
