"""Control commands on the MAG devices (manual appendix 6, logging
options): ``get_freestore:device,fmt``, the free space of a device in MB
(``fmt`` default ``%d``; device default MAG0), and ``testmode:#``, text
appended to the file name of every object stored from then on (at most
32 characters; ``testmode:`` with nothing stops it; the index records the
real names), ``movedatatodevice:to,from``, every object of a MAG device
moved to another (``DeviceMover``; it fails when the source folder is not
there, or when objects were not moved), ``renamedevice:from,to``, the device
name of image rows changed (a disk now configured under another name),
``testimages:device``, every indexed file of a MAG device
read to its end (the command fails when one cannot be), and
``verifymirrordisk:device``, the files of a MAG device
(default: of every mirrored one) compared with their mirror copies; copies
missing or different are queued again, and the command fails when it
found any (or files it could not read).
"""

from twisted.logger import Logger

from pacscore.control.arguments import AsyncControlCommand, ControlCommand, fields
from pacscore.control.context import CommandError, formatted
from pacscore.control.maintenance import checkDevicePresent, device
from pacscore.control.status import deviceSpace
from pacscore.storage.part10 import fileError
from pacscore.storage.relocation import MoveStopped

MAX_TEST_MODE = 32  # so that file names stay within the index's ObjectFile column


class GetFreeStore(ControlCommand):
    name = "get_freestore"
    usage = "--get_freestore:dev,fmt  Report free #Mb on device"
    readOnly = True

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


class VerifyMirrorDisk(AsyncControlCommand):
    name = "verifymirrordisk"
    usage = "--verifymirrordisk:device  Verify mirror disk for selected device (default: all)"
    log = Logger()

    async def execute(self, arguments, context):
        name = arguments.strip()
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

        summaries, problems = [], 0
        for deviceName in names:
            objects = await index.runQuery(index.storedOn, deviceName)
            queued = await workers.deferToWorker(queue.queuedMirrorCopies, deviceName)
            verification = await workers.deferToWorker(mirrors.verify, deviceName, objects,
                                                       archive.objectReader.magPath, queued,
                                                       context.progressFromThread)
            await queue.queueMirrorCopies(verification.damaged)
            summaries.append(verification.summary())
            problems += verification.problems
            self.log.info("{peer}: verifymirrordisk: {summary}", peer=context.peer, summary=summaries[-1])
        if problems:
            raise CommandError("\n".join(summaries))
        return "\n".join(summaries)


def readEveryFile(deviceName, objects, magPath, report, progressEvery=1000):
    """Read every ``(SOPInstanceUID, ObjectFile)`` of ``objects`` on MAG
    device ``deviceName`` to its end (blocking); each unusable one and
    every ``progressEvery`` files are reported; returns how many failed."""
    failed = 0
    for count, (_, objectFile) in enumerate(objects, 1):
        error = fileError(magPath(deviceName, objectFile))
        if error is not None:
            failed += 1
            report(f"{deviceName}:{objectFile}: {error}")
        if count % progressEvery == 0:
            report(f"{count} of {len(objects)} files of {deviceName} read")
    return failed


class ImageReadTest(AsyncControlCommand):
    name = "testimages"
    usage = "--testimages:device  Test read all images on device (default MAG0)"
    log = Logger()

    async def execute(self, arguments, context):
        archive = context.archive
        deviceName = device(archive, arguments.strip() or "MAG0").name
        objects = await archive.index.runQuery(archive.index.storedOn, deviceName)
        failed = await archive.workers.deferToWorker(
            readEveryFile, deviceName, objects, archive.objectReader.magPath,
            context.progressFromThread)
        summary = f"{deviceName}: {len(objects) - failed} of {len(objects)} files read to their end, {failed} unusable"
        self.log.info("{peer}: testimages: {summary}", peer=context.peer, summary=summary)
        if failed:
            raise CommandError(summary)
        return summary


class MoveDataToDevice(AsyncControlCommand):
    name = "movedatatodevice"
    usage = "--movedatatodevice:to,from  Move data from one device to another"
    log = Logger()
    batch = 500

    async def execute(self, arguments, context):
        archive = context.archive
        to, source = fields(arguments, 2)
        sourceDevice = device(archive, source)
        target, origin = device(archive, to).name, sourceDevice.name
        if target == origin:
            raise CommandError(f"{origin} is both the source and the target")
        await checkDevicePresent(archive, sourceDevice)
        objects = await archive.index.runQuery(archive.index.storedOn, origin)
        moved = 0
        for start in range(0, len(objects), self.batch):
            try:
                moved += await archive.deviceMover.move(
                    [(uid, origin, objectFile) for uid, objectFile in objects[start:start + self.batch]], target)
            except MoveStopped as e:
                raise CommandError(f"{moved + e.moved} object(s) moved from {origin} to {target}, "
                                   f"then stopped: {e.error}") from None
            context.progress(f"{moved} of {len(objects)} objects moved to {target}")
        summary = f"{moved} object(s) moved from {origin} to {target}"
        self.log.info("{peer}: movedatatodevice: {summary}", peer=context.peer, summary=summary)
        if moved < len(objects):
            raise CommandError(f"{moved} of {len(objects)} object(s) moved from {origin} to {target}, "
                               f"{len(objects) - moved} not (gone, replaced or unreadable: see the warnings)")
        return summary


class RenameDevice(ControlCommand):
    name = "renamedevice"
    usage = "--renamedevice:from,to  Rename device in database"
    log = Logger()

    def run(self, arguments, context):
        archive = context.archive
        old, new = fields(arguments, 2)
        if not old:
            raise CommandError("renamedevice needs the device name to change: renamedevice:from,to")
        new = device(archive, new).name
        d = archive.index.runWrite(_renameDevice, archive.index, old, new)

        def renamed(count):
            summary = f"{count} image(s) renamed from {old} to {new}"
            self.log.info("{peer}: renamedevice: {summary}", peer=context.peer, summary=summary)
            return summary
        return d.addCallback(renamed)


def _renameDevice(connection, index, old, new):
    """In the index writer: the image rows of device ``old`` now name ``new``."""
    image = index.tables.image
    count = connection.execute(image.update().where(image.c.DeviceName == old).values(DeviceName=new)).rowcount
    index.forgetCache()
    return count
