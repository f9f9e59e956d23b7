"""Control commands on the MAG devices (manual appendix 6, logging
options): ``get_freestore:device,fmt``, the free space of a device in MB
(``fmt`` default ``%d``; device default MAG0), and ``testmode:#``, text
appended to the file name of every object stored from then on (at most
32 characters; ``testmode:`` with nothing stops it; the index records the
real names), and ``verifymirrordisk:device``, the files of a MAG device
(default: of every mirrored one) compared with their mirror copies; copies
missing or different are queued again, and the command fails when it
found any (or files it could not read).
"""

from twisted.internet import defer
from twisted.logger import Logger

from pacscore.control.arguments import ControlCommand, fields
from pacscore.control.context import CommandError, formatted
from pacscore.control.maintenance import device
from pacscore.control.status import deviceSpace

MAX_TEST_MODE = 32  # so that file names stay within the index's ObjectFile column


class GetFreeStore(ControlCommand):
    name = "get_freestore"
    usage = "--get_freestore:dev,fmt  Report free #Mb on device"

    def run(self, arguments, context):
        name, fmt = fields(arguments, 2)
        archive = context.archive
        devices = {device.name.lower(): device for device in archive.devices}
        device = devices.get((name or "MAG0").lower())
        if device is None:
            raise CommandError(f"no device {name!r} (devices: {', '.join(d.name for d in archive.devices)})")

        def shown(space):
            if space[0]["freeMB"] is None:
                raise CommandError(f"cannot read the free space of {device.name} ({device.path})")
            return formatted(fmt or "%d", space[0]["freeMB"])

        return archive.workers.deferToWorker(deviceSpace, [device]).addCallback(shown)


class SetTestMode(ControlCommand):
    name = "testmode"
    usage = "--testmode:#  Append # to dicom filenames"

    def run(self, arguments, context):
        text = arguments.strip()
        if "/" in text or "\\" in text:
            raise CommandError(f"testmode text may not contain a folder separator: {text!r}")
        if len(text) > MAX_TEST_MODE:
            raise CommandError(f"testmode text may have at most {MAX_TEST_MODE} characters, not {len(text)}")
        context.archive.namer.testMode = text
        return ""


class VerifyMirrorDisk(ControlCommand):
    name = "verifymirrordisk"
    usage = "--verifymirrordisk:device  Verify mirror disk for selected device (default: all)"
    log = Logger()

    def run(self, arguments, context):
        return defer.ensureDeferred(self._verify(arguments.strip(), context))

    async def _verify(self, name, context):
        archive = context.archive
        mirrors, index, queue, workers = archive.mirrors, archive.index, archive.exportQueue, archive.workers
        if name:
            names = [device(archive, name).name]
            if names[0] not in mirrors.mirrored:
                raise CommandError(f"{names[0]} has no mirror device (MIRRORDevice{names[0][3:]} in dicom.ini)")
        else:
            names = sorted(mirrors.mirrored)
            if not names:
                raise CommandError("there is no mirror device (MIRRORDevices, MIRRORDevice0 ... in dicom.ini)")

        def report(line):
            context.reactor.callFromThread(context.progress, line)

        summaries, problems = [], 0
        for deviceName in names:
            objects = await index.runQuery(index.storedOn, deviceName)
            queued = await workers.deferToWorker(queue.queuedMirrorCopies, deviceName)
            verification = await workers.deferToWorker(mirrors.verify, deviceName, objects,
                                                       archive.objectReader.magPath, queued, report)
            await queue.queueMirrorCopies([(uid, deviceName, objectFile)
                                           for uid, objectFile in verification.damaged])
            summaries.append(verification.summary())
            problems += verification.problems
            self.log.info("{peer}: verifymirrordisk: {summary}", peer=context.peer, summary=summaries[-1])
        if problems:
            raise CommandError("\n".join(summaries))
        return "\n".join(summaries)
