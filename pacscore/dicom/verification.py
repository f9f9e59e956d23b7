"""C-ECHO SCP: verification (PS3.4 annex A)."""

from pacscore.dicom import commands

SUCCESS = 0x0000


class EchoService:
    """Answers every C-ECHO with Success."""

    def handle(self, protocol, contextId, command, dataset):
        protocol.sendMessage(contextId, commands.response(command, commands.C_ECHO_RSP, SUCCESS))
