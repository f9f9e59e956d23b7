"""Control commands run in-process, as the control port runs them, for web
pages and converters (Lua's ``servercommand``): ``runCommand`` (a command
object and its arguments) and ``commandOutput`` (a ``--name:arguments``
line, its output as text; with ``html`` the values its listing rows show
are HTML-escaped for a page, see ``pacscore.control.output``).  ``peer``
says in the log who asked.  Both return Deferreds; call them in the
reactor.

A sandboxed Lua script's ``servercommand`` (``sandboxed``) runs only the
commands that declare themselves ``readOnly``, in a context that writes no
file and shows no secret (``ControlContext.sandboxed``): a script must not
turn its own sandbox off (``put_param:LuaAllowUnsafe,1``) or learn the
control port's secret.  ``LuaAllowUnsafe = 1`` lets it run every command.
``secretsHiddenFrom`` (who asked: "web pages" for a scripted page's
command lines) keeps the secrets from a caller that may run every command."""

from twisted.internet import defer

from pacscore.control.context import CommandError, ControlContext
from pacscore.control.protocol import parseCommand


WEB_PAGE = "web page"


def runCommand(archive, command, arguments, html=False, peer=WEB_PAGE, sandboxed=False, secretsHiddenFrom=None):
    """Deferred of what ``command`` answers to ``arguments``; CommandError when it refuses."""
    if sandboxed and not getattr(command, "readOnly", False):
        return defer.fail(CommandError("sandboxed Lua scripts run only commands that change nothing "
                                       "(LuaAllowUnsafe = 1 allows every one)"))
    context = ControlContext(archive, archive.reactor, peer=peer, html=html, sandboxed=sandboxed,
                             secretsHiddenFrom=secretsHiddenFrom)
    return defer.maybeDeferred(command.run, arguments, context)


def _text(output):
    return output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output or "")


def _failed(failure, name):
    failure.trap(CommandError)
    raise CommandError(f"--{name} failed: {failure.value}")


def commandOutput(archive, commands, line, html=False, peer=WEB_PAGE, sandboxed=False, secretsHiddenFrom=None):
    """Deferred of the text a ``--name:arguments`` line's command (of the
    ``CommandRegistry`` ``commands``) outputs; BadRequest for a line that is
    no command, CommandError for an unknown one or a refusal."""
    name, arguments = parseCommand(line)
    command = commands.lookup(name)
    if command is None:
        return defer.fail(CommandError(f"unknown command --{name}"))
    return runCommand(archive, command, arguments, html, peer, sandboxed, secretsHiddenFrom).addCallbacks(
        _text, _failed, errbackArgs=(name,))
