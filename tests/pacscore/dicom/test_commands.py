"""Unit tests of pacscore.dicom.commands: the command set codec, its
text for the debug log and its pydicom Dataset form (Lua's Command)."""

from twisted.trial import unittest

from pacscore.dicom import commands


class CommandTests(unittest.TestCase):

    def test_roundTrip(self):
        command = {commands.COMMAND_FIELD: commands.C_MOVE_RQ, commands.MESSAGE_ID: 7,
                   commands.AFFECTED_SOP_CLASS_UID: "1.2.840.10008.5.1.4.1.2.2.2", commands.MOVE_DESTINATION: "VIEWER",
                   commands.COMMAND_DATASET_TYPE: commands.DATASET_PRESENT}
        decoded = commands.decodeCommand(commands.encodeCommand(command))
        self.assertEqual({tag: value for tag, value in decoded.items() if tag != commands.COMMAND_GROUP_LENGTH},
                         command)

    def test_describeCommand(self):
        """One line per element, tag order, with VR and keyword; the command
        field named, statuses in hex, tag lists as tags."""
        response = {commands.COMMAND_FIELD: commands.C_STORE_RSP, commands.STATUS: 0xA700,
                    commands.OFFENDING_ELEMENT: [0x00100020], commands.MESSAGE_ID_RESPONDED_TO: 3}
        self.assertEqual(commands.describeCommand(response).splitlines(), [
            "(0000,0100) US CommandField: 0x8001 C-STORE-RSP",
            "(0000,0120) US MessageIDBeingRespondedTo: 3",
            "(0000,0900) US Status: 0xA700",
            "(0000,0901) AT OffendingElement: (0010,0020)"])

    def test_asDatasetAndBack(self):
        """A Dataset of a command set gives it back as a received one, with
        its changes; elements outside group 0000 are left out, a command set
        that cannot be sent is a ValueError."""
        response = commands.decodeCommand(commands.encodeCommand({
            commands.COMMAND_FIELD: commands.C_STORE_RSP, commands.STATUS: 0xA700,
            commands.OFFENDING_ELEMENT: [0x00100020, 0x00100010], commands.MESSAGE_ID_RESPONDED_TO: 3,
            commands.AFFECTED_SOP_INSTANCE_UID: "1.2.3", 0x00005010: b"xy"}))
        dataset = commands.asDataset(response)
        self.assertEqual((dataset.Status, dataset.OffendingElement), (0xA700, [0x00100020, 0x00100010]))
        self.assertEqual(commands.fromDataset(dataset), response)
        dataset.Status = 0
        dataset.PatientID = "not a command element"
        self.assertEqual(commands.fromDataset(dataset), {**response, commands.STATUS: 0})
        dataset.Status = None
        self.assertRaisesRegex(ValueError, "^no command set: ", commands.fromDataset, dataset)
        dataset.Status = 0
        del dataset.CommandField
        self.assertRaisesRegex(ValueError, "without Command Field", commands.fromDataset, dataset)
