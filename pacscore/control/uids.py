"""Control commands on UIDs (manual appendix 6, test options): ``genuid``,
``changeuid``, ``changeuidback``, ``checksum``.

New UIDs start with dicom.ini's ``UIDPrefix`` (else pydicom's ``2.25.``).
``changeuid`` and ``changeuidback`` use the archive's UID map, the one the
anonymizing converters use (``newuids``, %E, %R): the pairs are kept in
the UIDMODS table, so the same UID always gives the same new one, and
``changeuid`` answers the UID ``newuids`` puts in place of the original
(``uidFor``), not a text a Lua script recorded for it.
"""

from pacscore.control.arguments import ControlCommand
from pacscore.control.context import CommandError
from pacscore.converters.variables import checksum


def _uid(arguments, usage):
    uid = arguments.strip()
    if not uid:
        raise CommandError(f"usage: {usage}")
    return uid


def _badPrefix(error, uidMap):
    """The CommandError for pydicom's ValueError about the UID prefix."""
    return CommandError(f"cannot make a UID with UIDPrefix {uidMap.prefix!r}: {error}")


class GenUid(ControlCommand):
    name = "genuid"
    usage = "--genuid:  Generate an UID"
    readOnly = True

    def run(self, arguments, context):
        uidMap = context.archive.converterServices.uidMap
        try:
            return uidMap.newUID()
        except ValueError as e:
            raise _badPrefix(e, uidMap) from e


class ChangeUid(ControlCommand):
    name = "changeuid"
    usage = "--changeuid:UID  Give new UID as generated now or before"

    def run(self, arguments, context):
        uid = _uid(arguments, self.usage)
        archive = context.archive
        uidMap = archive.converterServices.uidMap

        def failed(failure):
            failure.trap(ValueError)
            raise _badPrefix(failure.value, uidMap)

        return archive.workers.deferToWorker(uidMap.uidFor, uid, "changeuid").addErrback(failed)


class ChangeUidBack(ControlCommand):
    name = "changeuidback"
    usage = "--changeuidback:UID  Give old UID from one generated above"
    readOnly = True

    def run(self, arguments, context):
        uid = _uid(arguments, self.usage)
        archive = context.archive

        def found(old):
            if old is None:
                raise CommandError(f"{uid} is not a UID made by changeuid or an anonymizer")
            return old

        return archive.workers.deferToWorker(archive.converterServices.uidMap.oldFor, uid).addCallback(found)


class Checksum(ControlCommand):
    name = "checksum"
    usage = "--checksum:string  Give checksum of string"
    readOnly = True

    def run(self, arguments, context):
        return checksum(arguments)
