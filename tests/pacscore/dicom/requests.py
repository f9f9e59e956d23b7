"""Builders of requestor-side PDUs for the upper-layer unit tests
(pynetdicom's codecs stand in for a real SCU)."""

import struct
import threading

from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE, AsynchronousOperationsWindowNegotiation, ImplementationClassUIDNotification,
    MaximumLengthNotification, SCP_SCU_RoleSelectionNegotiation)
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.presentation import PresentationContext

from pacscore.dicom import commands, datasets, pdu

VERIFICATION = "1.2.840.10008.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"


def associateRQ(contexts, called="PACS", calling="SCU", maxLength=16384, roles=(), asyncWindow=None,
                applicationContext="1.2.840.10008.3.1.1.1"):
    """An encoded A-ASSOCIATE-RQ; ``contexts`` is a list of (abstract, [transfer syntaxes])."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = applicationContext
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    for index, (abstract, transfers) in enumerate(contexts):
        context = PresentationContext()
        context.context_id = 2 * index + 1
        context.abstract_syntax = abstract
        context.transfer_syntax = transfers
        primitive.presentation_context_definition_list.append(context)
    info = []
    mx = MaximumLengthNotification()
    mx.maximum_length_received = maxLength
    info.append(mx)
    uid = ImplementationClassUIDNotification()
    uid.implementation_class_uid = "1.2.3.4"
    info.append(uid)
    for sopClass, scu, scp in roles:
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = sopClass
        role.scu_role, role.scp_role = scu, scp
        info.append(role)
    if asyncWindow:
        window = AsynchronousOperationsWindowNegotiation()
        window.maximum_number_operations_invoked, window.maximum_number_operations_performed = asyncWindow
        info.append(window)
    primitive.user_information = info
    rq = A_ASSOCIATE_RQ()
    rq.from_primitive(primitive)
    return rq.encode()


def message(contextId, command, dataset=None, maxPDU=16384):
    """The P-DATA-TF PDUs of one DIMSE message, joined."""
    if dataset is not None:
        command = dict(command, **{})
        command[commands.COMMAND_DATASET_TYPE] = commands.DATASET_PRESENT
    return b"".join(pdu.fragmentMessage(contextId, commands.encodeCommand(command), dataset, maxPDU))


def echoRQ(messageId=1):
    return {commands.COMMAND_FIELD: commands.C_ECHO_RQ, commands.MESSAGE_ID: messageId,
            commands.AFFECTED_SOP_CLASS_UID: VERIFICATION, commands.COMMAND_DATASET_TYPE: commands.NO_DATASET}


def readPDUs(data):
    """Split bytes written by the server into ``[(type, body)]``."""
    pdus = []
    offset = 0
    while offset < len(data):
        pduType, length = struct.unpack_from(">BxL", data, offset)
        pdus.append((pduType, data[offset + 6:offset + 6 + length]))
        offset += 6 + length
    return pdus


def readMessages(data):
    """The DIMSE commands (decoded) and data sets in server output, per context."""
    messages = []
    command = bytearray()
    dataset = bytearray()
    for pduType, body in readPDUs(data):
        if pduType != pdu.P_DATA_TF:
            continue
        for contextId, control, fragment in pdu.iterPDVs(body):
            if control & 1:
                command += fragment
                if control & 2:
                    decoded = commands.decodeCommand(bytes(command))
                    command = bytearray()
                    if decoded[commands.COMMAND_DATASET_TYPE] == commands.NO_DATASET:
                        messages.append((contextId, decoded, None))
                    else:
                        pending = (contextId, decoded)
            else:
                dataset += fragment
                if control & 2:
                    messages.append((pending[0], pending[1], bytes(dataset)))
                    dataset = bytearray()
    return messages


def commitmentRequest(references, transaction=None):
    """A Storage Commitment N-ACTION data set referencing ``references``
    (class, instance) pairs, with ``transaction`` as its Transaction UID (a
    new one when None, none when empty)."""
    request = Dataset()
    transaction = generate_uid() if transaction is None else transaction
    if transaction:
        request.TransactionUID = transaction
    request.ReferencedSOPSequence = []
    for sopClass, sop in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sopClass
        item.ReferencedSOPInstanceUID = sop
        request.ReferencedSOPSequence.append(item)
    return request


def recordDecodes(testCase, marker):
    """A list that gets, for each decode (``decodeDataset``) of a data set
    whose bytes hold ``marker``, whether it ran in the reactor's thread."""
    decodes = []
    real = datasets.read_dataset

    def reading(fp, *args, **kw):
        if marker in fp.getvalue():
            decodes.append(threading.current_thread() is threading.main_thread())
        return real(fp, *args, **kw)
    testCase.patch(datasets, "read_dataset", reading)
    return decodes
