"""Conquest's ``dgate --lua:chunk`` and ``--dolua:chunk``: a Lua chunk run
in the server, as a ``lua "..."`` converter runs its code (in a pool of its
own, ``Archive.luaChunks``, so that a chunk stuck in a C call, where
``LuaMaxInstructions`` does not count, holds up no storage and no other
command; when every thread of it runs a chunk, a further one is refused at once;
sandboxed unless ``LuaAllowUnsafe = 1``, stopped after
``LuaMaxInstructions``, with ``Data`` an empty object), what it prints the command's
output (at most ``MAX_ANSWER`` bytes, ``AnswerLines``: past them the chunk fails); a
chunk that fails fails the command, after what it printed.
Conquest's ``--dolua:`` runs the chunk in the dgate process itself; a pacs
dgate holds no archive, so both run it in the server.  ``--luastart:chunk``
starts the chunk the same way and answers at once, without waiting for it
(Conquest's closes the connection first): what it prints is logged, and
its failure logged as a warning."""

from twisted.logger import Logger

from pacscore.control.arguments import ControlCommand
from pacscore.control.context import CommandError
from pacscore.control.output import AnswerLines
from pacscore.converters.context import ConverterContext
from pacscore.converters.lua import LuaArguments, LuaFailure, LuaInlineCommand


class RunLua(ControlCommand):
    name = "lua"
    usage = "--lua:chunk  Run lua chunk in the server, its print output returned"

    def run(self, arguments, context):
        if not arguments.strip():
            raise CommandError("no Lua code given")
        chunks = context.archive.luaChunks
        if chunks.pending >= chunks.size:  # stuck ones (a C call never returns) would hold a queued chunk for ever
            raise CommandError(f"busy: {chunks.pending} Lua chunks running, try again later")
        return chunks.deferToWorker(_runChunk, context.archive, arguments, f"dgate --{self.name}")


class StartLua(RunLua):
    name = "luastart"
    usage = "--luastart:chunk  Start lua chunk in the server, not waiting for it (its output logged)"
    log = Logger()

    def run(self, arguments, context):
        started = super().run(arguments, context)
        started.addCallbacks(self._done, self._failed, callbackArgs=(context.peer,), errbackArgs=(context.peer,))
        return "Lua chunk started"

    def _done(self, printed, peer):
        self.log.info("{peer}: luastart: the Lua chunk ended{printed}", peer=peer,
                      printed=f", printing: {printed}" if printed else "")

    def _failed(self, failure, peer):
        if not failure.check(CommandError):
            self.log.failure("{peer}: luastart: the Lua chunk failed", failure, peer=peer)
            return
        output = failure.value.output
        self.log.warn("{peer}: luastart: {error}{printed}", peer=peer, error=failure.value,
                      printed=f" (it printed: {output})" if output else "")


def _runChunk(archive, code, name):
    """In a worker: the lines ``code`` printed; CommandError when it failed."""
    printed = AnswerLines("it prints")
    context = ConverterContext("import", None, "", archive.aeTitle, services=archive.converterServices,
                               converterName=name)
    try:
        LuaInlineCommand().execute(LuaArguments(code, archive.commands, "import"), context, printer=printed.append)
    except (LuaFailure, CommandError) as e:  # CommandError: print's, uncaught
        raise CommandError(f"Lua chunk failed: {printed.tooMuch or e}", output=printed.text()) from e
    if printed.tooMuch:  # the chunk caught print's error
        raise CommandError(f"Lua chunk failed: {printed.tooMuch}", output=printed.text())
    return printed.text()
