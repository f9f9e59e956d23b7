"""The attach commands (manual appendix 6, "Modification of dicom
objects"): ``attachanytopatient:any,sample``, ``attachanytostudy:any,sample``,
``attachanytoseries:any,sample`` and ``attachrtplantortstruct:plan,struc``.

The object in file ``any`` (Part-10 or a bare data set, stored here or not)
joins the patient, study or series of the object in file ``sample``: it
takes the sample's patient (study, series) attributes and new UIDs below
that level (``changes.attachedTo``), and is stored in this archive as a
new object (the converters do not see it), the file ``any`` left as it is.
As in Conquest, the new UIDs come from the UID map, made for the sample's
patient, study or series (ChangeUID's stage): attached again to the same
one, an object replaces its earlier copy; to another, it is another
object.  An RT Plan attached to an RT Structure Set joins its study, takes
its Frame of Reference and references it (``changes.planOnStructures``).
"""

from twisted.logger import Logger

from pacscore.control.arguments import AsyncControlCommand, fields
from pacscore.control.changes import RT_STRUCTURE_SET, attachedTo, planOnStructures
from pacscore.control.context import CommandError
from pacscore.control.data import fromFile, readFile, storeChanged
from pacscore.control.stored import objectFile, storedName
from pacscore.dicom.datasets import decodeDataset


def _sample(path):
    """In the I/O pool: the data set of ``path``, Pixel Data left out."""
    syntax, data = readFile(path)
    return decodeDataset(data, syntax, stopBeforePixels=True)


async def storedSample(archive, level, key):
    """The data set (Pixel Data left out) of one stored object the index
    finds at ``level`` by the QueryKey ``key``, or None when none is."""
    instances = await archive.index.runQuery(archive.query.instances, level, [key])
    return await sampleOf(archive, instances[0]) if instances else None


async def sampleOf(archive, instance):
    """The data set (Pixel Data left out) of the stored ``instance`` (an
    ``IndexQuery`` ``Instance``)."""
    path = await archive.workers.deferToWorker(archive.objectReader.path, instance.deviceName, instance.objectFile)
    return await fromFile(archive, path, _sample)


class _Attach(AsyncControlCommand):
    """``change(uidMap, sample)``: what joining ``sample`` does."""

    log = Logger()

    async def execute(self, arguments, context):
        archive = context.archive
        anyText, sampleText = fields(arguments, 2)
        path, samplePath = await objectFile(archive, anyText), await objectFile(archive, sampleText)
        sample = await fromFile(archive, samplePath, _sample)
        change = self.change(archive.converterServices.uidMap, sample)
        _, device, relative = await storeChanged(archive, path, change, copy=True, callingAE=self.name[:16])
        stored = storedName(device, relative)
        self.log.info("{peer}: {command}: {path} stored as {stored}", peer=context.peer, command=self.name,
                      path=path, stored=stored)
        return f"{path} attached: {stored}"

    def change(self, uidMap, sample):
        return attachedTo(uidMap, sample, self.level)


class AttachAnyToPatient(_Attach):
    name = "attachanytopatient"
    usage = "--attachanytopatient:any,sample  Attach any object to the patient in sample file"
    level = "PATIENT"


class AttachAnyToStudy(_Attach):
    name = "attachanytostudy"
    usage = "--attachanytostudy:any,sample  Attach any object to the study in sample file"
    level = "STUDY"


class AttachAnyToSeries(_Attach):
    name = "attachanytoseries"
    usage = "--attachanytoseries:any,sample  Attach any object to the series in sample file"
    level = "SERIES"


class AttachRTPlanToRTStruct(_Attach):
    name = "attachrtplantortstruct"
    usage = "--attachrtplantortstruct:plan,struc  Attach rtplan to rtstruct"

    def change(self, uidMap, sample):
        if sample.get("SOPClassUID") != RT_STRUCTURE_SET:
            raise CommandError(f"the second file is not an RT Structure Set (SOP Class {sample.get('SOPClassUID')})")
        return planOnStructures(uidMap, sample)
