"""Routing one DIMSE command to a service by the SOP class of its context.

C-FIND serves two information models that share nothing but the command:
the query/retrieve models (FindService) and the modality worklist
(WorklistFindService).
"""


class SopClassRouter:
    """A service that hands each request to ``services[sopClass]``, or to
    ``default`` for any other SOP class."""

    def __init__(self, services, default):
        self.services = services
        self.default = default

    def handle(self, protocol, contextId, command, dataset):
        sopClass = protocol.association.contexts[contextId][0]
        return self.services.get(sopClass, self.default).handle(protocol, contextId, command, dataset)
