"""Control commands about the server itself (manual appendix 6):
``--display_status[:json|file]`` and ``--quit:``."""

from twisted.internet import defer

from pacscore.control import status
from pacscore.control.arguments import ControlCommand
from pacscore.control.context import CommandError
from pacscore.control.output import outputPath
from pacscore.regularfiles import openRegularFile


def _writeText(path, text):
    with openRegularFile(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


class DisplayStatus(ControlCommand):
    """Start time, uptime, associations, images, counters, queues, free space."""

    name = "display_status"
    usage = ("--display_status:file  Display server status (no argument: to the console; json: as one "
             "JSON object; a file: written there by the server)")
    readOnly = True

    def run(self, arguments, context):
        argument = arguments.strip()
        gathered = defer.ensureDeferred(status.gather(context.archive, context.reactor))
        if argument.lower() == "json":
            return gathered.addCallback(status.asJSON)
        text = gathered.addCallback(status.asText)
        if not argument:
            return text
        path = outputPath(context, argument)
        written = text.addCallback(lambda report: context.archive.workers.deferToWorker(_writeText, path, report))
        return written.addCallbacks(lambda _: "", self._notWritten, errbackArgs=(path,))

    @staticmethod
    def _notWritten(failure, path):
        failure.trap(OSError)
        raise CommandError(f"cannot write {path}: {failure.value.strerror}")


class Quit(ControlCommand):
    """Answers at once, then stops the server in order
    (``pacscore.control.shutdown.OrderlyStop``)."""

    name = "quit"
    usage = "--quit:  Stop the server (no new associations, running ones finish within QuitGracePeriod)"

    def run(self, arguments, context):
        context.quit()
        return "pacs is stopping: no new associations, the running ones may finish"
