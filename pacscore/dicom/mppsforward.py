"""Forwarding MPPS to other systems (dicom.ini ``ForwardMPPSTo``), as
dcm4chee forwards a modality's procedure steps to a RIS.

Every N-CREATE and N-SET this archive accepted is sent on, with the same
SOP Instance UID and attributes, to each AE title the key lists
(acrnema.map gives host and port), on a new association, tried
``ATTEMPTS`` times ``RetryDelay`` seconds apart.  The messages to one
destination go one at a time in the order they came, so an N-SET never
overtakes its N-CREATE.  A destination's refusal is logged, not retried.
What is still waiting when pacs stops is not sent (the steps themselves
are kept in ``PacsMPPS``).
"""

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.codecs.syntaxes import UNCOMPRESSED
from pacscore.dicom import commands
from pacscore.dicom.client import sendToNode
from pacscore.dicom.datasets import encodeDataset
from pacscore.dicom.mpps import MPPS
from pacscore.dicom.negotiation import PLAIN_TITLES, TitleStyle

ATTEMPTS = 3
SUCCESS = 0x0000


def destinationsFrom(ini):
    """The AE titles of ``ForwardMPPSTo`` (comma or space separated)."""
    return [ae for ae in ini.get("ForwardMPPSTo", "").replace(",", " ").split() if ae]


def forwardCommand(field, uid):
    """The command of an N-CREATE-RQ or N-SET-RQ of step ``uid``."""
    if field == commands.N_CREATE_RQ:
        ids = {commands.AFFECTED_SOP_CLASS_UID: MPPS, commands.AFFECTED_SOP_INSTANCE_UID: uid}
    else:
        ids = {commands.REQUESTED_SOP_CLASS_UID: MPPS, commands.REQUESTED_SOP_INSTANCE_UID: uid}
    return {commands.COMMAND_FIELD: field, **ids, commands.COMMAND_DATASET_TYPE: commands.DATASET_PRESENT}


class MppsForwarder:
    """Sends accepted MPPS messages on to ``destinations`` (AE titles of
    ``acrNemaMap``); see the module docstring."""

    log = Logger()

    def __init__(self, destinations, acrNemaMap, aeTitle, reactor, retryDelay=100, connectTimeout=30,
                 dimseTimeout=300, titleStyle=PLAIN_TITLES):
        self.destinations = list(destinations)
        self.acrNemaMap = acrNemaMap
        self.aeTitle = aeTitle
        self.reactor = reactor
        self.retryDelay = retryDelay
        self.connectTimeout = connectTimeout
        self.dimseTimeout = dimseTimeout
        self.titleStyle = titleStyle
        self.queues = {ae: defer.DeferredLock() for ae in self.destinations}

    @classmethod
    def fromConfiguration(cls, configuration, aeTitle, reactor):
        """The forwarder of dicom.ini, or None when ``ForwardMPPSTo`` names nobody."""
        ini = configuration.ini
        destinations = destinationsFrom(ini)
        if not destinations:
            return None
        for ae in destinations:
            if configuration.acrNemaMap.lookup(ae) is None:
                cls.log.warn("ForwardMPPSTo: {ae} is not in acrnema.map: procedure steps will not reach it", ae=ae)
        return cls(destinations, configuration.acrNemaMap, aeTitle, reactor,
                   retryDelay=ini.getint("RetryDelay", 100), dimseTimeout=configuration.tcpipTimeout or 300,
                   titleStyle=TitleStyle.fromIni(ini))

    def forward(self, field, uid, dataset):
        """Queue an accepted N-CREATE or N-SET (``field``) of step ``uid``
        with its attributes (a Dataset) for every destination; fires when
        all were tried, never fails."""
        return defer.DeferredList([self.queues[ae].run(self._send, ae, field, uid, dataset)
                                   .addErrback(self._failed, ae, uid) for ae in self.destinations])

    def _failed(self, failure, ae, uid):
        self.log.failure("MPPS {uid}: forwarding to {ae} failed", failure, uid=uid, ae=ae)

    async def _send(self, ae, field, uid, dataset):
        name = commands.COMMAND_NAMES[field]
        node = self.acrNemaMap.lookup(ae)
        if node is None:
            self.log.error("MPPS {uid}: {ae} is not in acrnema.map, so the {name} is not forwarded", uid=uid, ae=ae,
                           name=name)
            return
        answers = []

        async def send(association):
            contextId, syntax = association.contextFor(MPPS)
            response, _ = await association.request(contextId, forwardCommand(field, uid),
                                                    encodeDataset(dataset, syntax))
            answers.append(response.get(commands.STATUS))
        if not await sendToNode(self.reactor, node, self.aeTitle, [(MPPS, list(UNCOMPRESSED))], send, self.log,
                                f"MPPS {uid}: {name}", ATTEMPTS, self.retryDelay, self.connectTimeout,
                                self.dimseTimeout, self.titleStyle):
            self.log.error("MPPS {uid}: the {name} could not be forwarded to {ae}", uid=uid, name=name, ae=ae)
        elif answers[-1] == SUCCESS:
            self.log.info("MPPS {uid}: {name} forwarded to {ae}", uid=uid, name=name, ae=ae)
        else:
            status = answers[-1]
            self.log.warn("MPPS {uid}: {ae} refused the forwarded {name} with status {status}", uid=uid, ae=ae,
                          name=name, status="none" if status is None else f"0x{status:04X}")
