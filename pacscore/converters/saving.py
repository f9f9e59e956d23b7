"""The converter commands that hand the object to files and programs
(manual 7.2): ``save to FILE`` and ``process with COMMAND``.

``save to`` writes the current data set as a Part-10 file (the name is
expanded, ``filePath``; missing folders are created); in an export converter, the whole
stored object (NKI compressed pixel data decompressed).  ``process with``
writes it to a temporary Part-10 file, runs the expanded command (each
value quoted as data, ``shellCommand``) through the shell with that file's
name appended as its last argument, and reads the file back as the new
data set; a command that fails (non-zero exit) or leaves an
unreadable file leaves the data set as it was, with a log line.  A
command that is a Lua file (``process with x.lua text``) runs on the data
set itself, as ``lua:`` runs it (see ``pacscore.converters.lua``).

The file is written in the data set's transfer syntax (its ``file_meta``),
else in Explicit VR Little Endian; an object read back keeps the syntax of
its file (a bare data set's: the encoding it was found in).
"""

import os
import shlex
import subprocess
import tempfile

from pydicom import dcmread
from pydicom.datadict import dictionary_has_tag
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian
from twisted.logger import Logger

from pacscore.codecs.nki import NKIError
from pacscore.codecs.nkipixels import decompressDecoded
from pacscore.codecs.syntaxes import SYNTAX_OF_ENCODING
from pacscore.converters.command import TextCommand, filePath, luaScriptOf
from pacscore.converters.context import Outcome
from pacscore.converters.elements import applyAttributes
from pacscore.converters.shellquoting import shellCommand
from pacscore.dicom.datasets import encodeDataset
from pacscore.dicom.negotiation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from pacscore.storage.part10 import encodeFileMeta


def transferSyntaxOf(dataset):
    meta = getattr(dataset, "file_meta", None)
    return (meta.get("TransferSyntaxUID") if meta is not None else None) or ExplicitVRLittleEndian


def writePart10(dataset, path, syntax=None, body=None, opener=open):
    """Write ``dataset`` to ``path`` as a Part-10 file: in ``syntax`` (by
    default its file meta's), ``body`` its bytes when already encoded;
    ``opener`` opens the file (as ``open``)."""
    syntax = syntax or transferSyntaxOf(dataset)
    header = encodeFileMeta(str(dataset.get("SOPClassUID", "")), str(dataset.get("SOPInstanceUID", "")),
                            syntax, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION)
    if body is None:
        body = encodeDataset(dataset, syntax)
    with opener(path, "wb") as f:
        f.write(header)
        f.write(body)


def isObject(dataset):
    """Whether what pydicom read with ``force`` is an object: a file with
    the preamble and DICM, or a meta group, or a bare data set (a .v2)
    whose first element is a group length or one the dictionary knows;
    text or random bytes make a bogus first element, zeros an empty
    (0000,0000)."""
    if dataset.preamble is not None or len(dataset.file_meta):
        return bool(len(dataset))
    first = next(iter(dataset.keys()), None)
    if first is None or (first == 0 and not dataset[first].value):
        return False
    return dictionary_has_tag(first) or first & 0x1FFFF == 0


def readObject(path, attributes=None):
    """The whole object in ``path`` (Part-10, or a bare data set as
    Conquest's .v2 files), NKI compressed pixel data decompressed, with
    ``attributes`` (its elements up to the pixels, changed) applied when
    given; InvalidDicomError when it holds no object (``isObject``) or
    damaged NKI data."""
    dataset = dcmread(path, force=True)
    if not isObject(dataset):
        raise InvalidDicomError(f"{path} holds no DICOM object")
    if attributes is not None:
        applyAttributes(dataset, attributes)
    if "TransferSyntaxUID" not in dataset.file_meta:  # a bare data set: as pydicom found it encoded
        dataset.file_meta.TransferSyntaxUID = SYNTAX_OF_ENCODING[dataset.original_encoding]
    try:
        decompressDecoded(dataset)
    except NKIError as e:
        raise InvalidDicomError(f"{path}: {e}") from e
    return dataset


def wholeObject(context):
    """The object a converter hands on: the data set, or in an export
    converter (whose data set stops before the pixels) the stored file read
    again, with what the line changed in the data set; OSError or
    InvalidDicomError when it cannot be read.  An object a Lua script made
    or read (not ``context.stored``) is its data set as it is."""
    if context.isImport or not context.stored:
        return context.dataset
    return readObject(context.filename, context.dataset if context.changed else None)


class SaveToCommand(TextCommand):
    """``save to FILE`` (relative names: the configuration's working folder)."""

    name = "save to"
    reachesOutside = True

    log = Logger()

    def run(self, arguments, context):
        path = filePath(context, arguments)
        try:
            dataset = wholeObject(context)
        except (OSError, InvalidDicomError) as e:
            self.log.error("{converter}: save to {path}: {error}", converter=context.converterName,
                           path=path, error=e)
            return Outcome.CONTINUE
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        writePart10(dataset, path)
        return Outcome.CONTINUE


class ProcessWithCommand(TextCommand):
    """``process with COMMAND`` (run in the configuration's working folder);
    ``process with x.lua text`` runs the Lua file on the object as the
    ``lua:`` command does, ``command_line`` the text."""

    log = Logger()
    name = "process with"
    scope = "I"
    reachesOutside = True

    def parse(self, arguments, where):
        text = super().parse(arguments, where)
        luaScript = luaScriptOf(text)
        luaFile = None if luaScript is None else where.registry.commands.get("lua:")
        if luaFile is None:
            return text
        return luaFile, luaFile.file(*luaScript, where)

    def run(self, arguments, context):
        if isinstance(arguments, tuple):
            luaFile, luaArguments = arguments
            return luaFile.run(luaArguments, context)
        fd, path = tempfile.mkstemp(prefix="pacs-process-", suffix=".dcm")
        os.close(fd)
        try:
            writePart10(context.dataset, path)
            self._process(f"{shellCommand(arguments, context)} {shlex.quote(path)}", path, context)
        finally:
            os.unlink(path)
        return Outcome.CONTINUE

    def _process(self, commandLine, path, context):
        configuration = context.services.configuration
        result = subprocess.run(commandLine, shell=True, stdin=subprocess.DEVNULL, capture_output=True,
                                cwd=configuration.workdir if configuration is not None else None)
        if result.returncode != 0:
            output = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
            self.log.error("{converter}: process with {commandLine!r} failed (exit status {status}): "
                           "{output}", converter=context.converterName, commandLine=commandLine,
                           status=result.returncode, output=output)
            return
        try:
            dataset = readObject(path)
        except (OSError, InvalidDicomError) as e:
            self.log.error("{converter}: process with {commandLine!r} left no readable object: "
                           "{error}", converter=context.converterName, commandLine=commandLine, error=e)
            return
        # in place: whoever runs the line (the import converters, the hooks) encodes this object,
        # in the transfer syntax the program left it in
        context.dataset.clear()
        context.dataset.update(dataset)
        context.dataset.file_meta = dataset.file_meta
        context.changed = True
