"""Conversion control commands on DICOM files (manual appendix 6,
"Conversion options"): ``count_frames``, ``extract_frames`` and
``uncompress``; and ``testcompress`` (a test option).

They read any DICOM file (Part-10 or a bare data set, stored or not;
Conquest's ``patid:sop`` names a stored object, ``stored.objectFile``) and
write their result as a Part-10 file where the operator says (never over
the archive's own files, ``output.outputPath``); the work runs in the I/O
pool.  ``extract_frames`` numbers frames from 0, as Conquest's frame
arguments do, and keeps the object's UIDs; ``uncompress`` writes explicit
VR little endian, NKI pixel data decompressed too.

``testcompress:file`` stores the object once per compression code the
archive knows (``TEST_CODES``), each copy a series of its own in the
object's study (new Series and SOP Instance UIDs, Series Description
"testcompress CODE"), compressed by the store as that code asks; it
answers, per code, the transfer syntax stored (and the NKI mode of NKI
compressed pixel data), or that the codecs could not convert to it (the
copy is then stored as it came).
"""

import os
from contextlib import nullcontext

from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from twisted.internet import defer
from twisted.logger import Logger

from pacscore.codecs import nki, nkipixels
from pacscore.codecs.compression import nkiMode, recode, recodedSyntaxes
from pacscore.codecs.transcode import TranscodeError, transcode
from pacscore.control.arguments import AsyncControlCommand, ControlCommand, fields, number
from pacscore.control.context import CommandError
from pacscore.control.data import readFile, storeChanged
from pacscore.control.output import outputPath
from pacscore.control.stored import objectFile, storedName
from pacscore.converters.saving import writePart10
from pacscore.dicom.datasets import IdentifierError, decodeDataset, encodeDataset
from pacscore.regularfiles import openRegularFile
from pacscore.storage.attributes import DatasetError


def _write(path, dataset, syntax, data):
    """A Part-10 file of ``data`` (``dataset``'s bytes in ``syntax``), its folder made."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    writePart10(dataset, path, syntax, data, opener=openRegularFile)


def frameCount(dataset):
    """Number of Frames, 1 when absent or empty."""
    try:
        return max(int(dataset.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        raise DatasetError(f"Number of Frames {dataset.get('NumberOfFrames')!r} is not a number") from None


def _countFrames(path):
    syntax, data = readFile(path)
    return frameCount(decodeDataset(data, syntax, stopBeforePixels=True))


def keepFrames(dataset, first, last):
    """Only frames ``first``..``last`` (from 0; ``last`` past the end: to
    the end) left in ``dataset``; how many. DatasetError when it has no
    such frame."""
    count = frameCount(dataset)
    if "PixelData" not in dataset:
        raise DatasetError("it has no Pixel Data")
    if first >= count:
        raise DatasetError(f"it has {count} frame(s), numbered from 0")
    last = min(last, count - 1)
    element = dataset["PixelData"]
    if element.is_undefined_length:
        frames = list(generate_frames(dataset.PixelData, number_of_frames=count))
        dataset.PixelData = encapsulate(frames[first:last + 1])
    else:
        bits = int(dataset.get("BitsAllocated") or 0)
        if bits % 8:
            raise DatasetError(f"frames of {bits} bit(s) per pixel cannot be cut apart here")
        size = int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel") or 1) * bits // 8
        dataset.PixelData = dataset.PixelData[first * size:(last + 1) * size]
    dataset.NumberOfFrames = last - first + 1
    return last - first + 1


def _extractFrames(path, target, first, last):
    """Frames ``first``..``last`` of ``path`` written to ``target``; how many."""
    syntax, data = readFile(path)
    dataset = decodeDataset(data, syntax)
    count = keepFrames(dataset, first, last)
    _write(target, dataset, syntax, encodeDataset(dataset, syntax))
    return count


def _uncompress(path, target):
    syntax, data = readFile(path)
    data, syntax = recode(data, syntax, "un")
    data = transcode(data, syntax, ExplicitVRLittleEndian)
    dataset = decodeDataset(data, ExplicitVRLittleEndian, stopBeforePixels=True)
    _write(target, dataset, ExplicitVRLittleEndian, data)


class FileConversion(ControlCommand):
    """Runs ``work(path, ...)`` in the I/O pool, in its turn (``turns``);
    its failures become CommandErrors."""

    def turns(self, archive):
        """What the work waits its turn in (an async context manager): none."""
        return nullcontext()

    def convert(self, archive, source, work, *args):
        """``work(path, *args)`` for the file ``source`` names (a path or
        ``patid:sop``, ``stored.objectFile``)."""
        return defer.ensureDeferred(self._convert(archive, source, work, *args))

    async def _convert(self, archive, source, work, *args):
        path = await objectFile(archive, source)
        try:
            async with self.turns(archive):
                return await archive.workers.deferToWorker(work, path, *args)
        except (OSError, DatasetError, IdentifierError, TranscodeError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else e
            raise CommandError(f"{self.name}: {path}: {reason}") from e


class CountFrames(FileConversion):
    name = "count_frames"
    usage = "--count_frames:file  report # frames in DICOM file"

    def run(self, arguments, context):
        return self.convert(context.archive, arguments.strip(), _countFrames).addCallback(str)


class ExtractFrames(FileConversion):
    name = "extract_frames"
    usage = "--extract_frames:file,out,first,last  Select frames of DICOM file (from 0)"

    def run(self, arguments, context):
        source, out, first, last = fields(arguments, 4)
        first = number(first, "first frame")
        last = number(last, "last frame") if last.strip() else first
        if last < first:
            raise CommandError(f"last frame {last} comes before first frame {first}")
        target = outputPath(context, out)
        d = self.convert(context.archive, source, _extractFrames, target, first, last)
        return d.addCallback(lambda count: f"{count} frame(s) written to {target}")


class Uncompress(FileConversion):
    name = "uncompress"
    usage = "--uncompress:file,out  Uncompress DICOM"

    def run(self, arguments, context):
        source, out = fields(arguments, 2)
        target = outputPath(context, out)
        return self.convert(context.archive, source, _uncompress, target).addCallback(
            lambda _: f"{target} written (explicit VR little endian)")


TEST_CODES = ("un", "j1", "j2", "j3", "j4", "j5", "j6", "jk", "jl", "n1", "n2", "n3", "n4")


def testCopy(prefix, code):
    """The change giving a ``testcompress`` copy its own series and SOP Instance UID."""

    def change(dataset):
        dataset.SeriesInstanceUID = generate_uid(prefix)
        dataset.SOPInstanceUID = generate_uid(prefix)
        dataset.SeriesDescription = f"testcompress {code}"
    return change


def _storedForm(path):
    """``(transfer syntax, NKI mode or None)`` of a stored file."""
    syntax, data = readFile(path)
    element = nkipixels.nkiValue(data, syntax)
    return syntax, None if element is None else nki.mode(element)


class TestCompress(AsyncControlCommand):
    name = "testcompress"
    usage = "--testcompress:file  Enter file in server with many compressions"
    log = Logger()

    async def execute(self, arguments, context):
        archive = context.archive
        path = await objectFile(archive, arguments.strip())
        lines = []
        for code in TEST_CODES:
            change = testCopy(archive.converterServices.uidMap.prefix, code)
            incoming, device, relative = await storeChanged(archive, path, change, callingAE=self.name,
                                                            compression=code)
            stored, mode = await archive.workers.deferToWorker(_storedForm,
                                                               archive.objectReader.magPath(device, relative))
            form = stored + (f" NKI mode {mode}" if mode else "")
            converted = stored in recodedSyntaxes(incoming.transferSyntax, code) and mode == nkiMode(code)
            note = "" if converted else " (not converted: see the log)"
            lines.append(f"{code}: {storedName(device, relative)} {form}{note}")
        self.log.info("{peer}: testcompress {path}: {count} copies stored", peer=context.peer, path=path,
                      count=len(lines))
        return "\n".join(lines)
