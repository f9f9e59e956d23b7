"""Control commands on the MAG devices (manual appendix 6, logging
options): ``get_freestore:device,fmt``, the free space of a device in MB
(``fmt`` default ``%d``; device default MAG0), and ``testmode:#``, text
appended to the file name of every object stored from then on (at most
32 characters; ``testmode:`` with nothing stops it; the index records the
real names).
"""

from pacscore.control.arguments import ControlCommand, fields
from pacscore.control.context import CommandError, formatted
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
