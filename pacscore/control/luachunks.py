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
dgate holds no archive, so both run it in the server."""

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
