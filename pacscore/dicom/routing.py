"""Routing one DIMSE command to a service by the SOP class of its context.

C-FIND serves two information models that share nothing but the command:
the query/retrieve models (FindService) and the modality worklist
(WorklistFindService); C-MOVE and C-GET serve their query/retrieve models.
A request on a context of any other SOP class (a C-FIND on a Verification
or storage context, say) is refused with 0122, SOP class not supported;
so is a C-STORE whose SOP class is not its context's (``refuse``).
"""

from twisted.logger import Logger

from pacscore.dicom import commands
from pacscore.dicom.commands import SOP_CLASS_NOT_SUPPORTED


class SopClassRouter:
    """A service that hands each request to ``services[sopClass]``, by the
    SOP class of its presentation context."""

    log = Logger()

    def __init__(self, services):
        self.services = services

    def handle(self, protocol, contextId, command, dataset):
        sopClass = protocol.association.contexts[contextId][0]
        service = self.services.get(sopClass)
        if service is not None:
            return service.handle(protocol, contextId, command, dataset)
        refuse(protocol, contextId, command, sopClass)
        return None


def refuse(protocol, contextId, command, sopClass, comment=None):
    """Answer ``command``, sent on a context of ``sopClass``, with 0122
    (SOP class not supported), log it and tell ``protocol.requestFailed``."""
    field = command[commands.COMMAND_FIELD]
    name = commands.COMMAND_NAMES.get(field, hex(field))
    comment = comment or f"no {name} for {sopClass}"
    SopClassRouter.log.warn("{peer}: {command} on a {sopClass} context refused: {comment}",
                            peer=protocol.peerName(), command=name, sopClass=sopClass, comment=comment)
    protocol.sendMessage(contextId, commands.response(
        command, field | 0x8000, SOP_CLASS_NOT_SUPPORTED, {commands.ERROR_COMMENT: comment[:64]}))
    protocol.requestFailed(command)
