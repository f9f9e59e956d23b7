"""A data set in the form a Conquest compression code asks for (manual
7.7): the one function storing, ``dgate -jd/-jc/-nd/-nc``, ArchiveCompression
and sending use to apply a code to an object.

The JPEG, JPEG 2000 and "un" codes ask for a transfer syntax
(``pacscore.codecs.syntaxes``); the NKI codes n1..n4 for NKI compressed
pixel data in the object's own uncompressed little endian syntax (explicit
VR little endian when it was in another one, JPEG decompressed first);
"nj" is n4 but leaves an object with compressed pixel data as it is, "uj"
is "un" for one with native pixel data and leaves the others as they are.
The downsizing codes k1..kc subsample images larger than their size
(``pacscore.codecs.downsize``), decompressing those with compressed pixel
data (explicit VR little endian) first.
The script codes s0..s9 change nothing here (their converter lines run
where the object is stored or sent, ``pacscore.converters.hooks``).
Every code but "as" (and unknown ones), the NKI and the script ones
decompresses NKI pixel data first: Conquest's "un" is "uncompress NKI
and/or JPEG".
"""

from pacscore.codecs import nkipixels
from pacscore.codecs.downsize import SIZES, downsizeDataset, needsDownsizing
from pacscore.codecs.jpeglossy import DEFAULT_QUALITY
from pacscore.codecs.syntaxes import (
    AS_IS, CODE_SYNTAXES, EXPLICIT_VR_LITTLE_ENDIAN, SCRIPT_CODES, codeOf, isCompressed, isSupportedCode,
    proposals, qualityOf, storedSyntax)
from pacscore.codecs.transcode import TranscodeError, transcode

NKI_MODES = {"n1": 1, "n2": 2, "n3": 3, "n4": 4, "nj": 4}
LEAVE_COMPRESSED = frozenset({"nj", "uj"})  # codes that leave compressed pixel data as it is
AS_STORED_CODE = "uj"  # an object as stored, NKI pixels expanded (WADO-RS transfer-syntax=*, STOW-RS forwards)


def nkiMode(code):
    """The NKI mode (1..4) a compression code asks for, or None."""
    return NKI_MODES.get(codeOf(code))


def keepsNKI(code):
    """Whether objects with NKI pixel data stay so under ``code``."""
    code = codeOf(code)
    return code == AS_IS or code in NKI_MODES or code in SCRIPT_CODES or not isSupportedCode(code)


def _leavesAsItIs(code, syntax):
    return code in LEAVE_COMPRESSED and isCompressed(syntax)


def recode(data, syntax, code, quality=DEFAULT_QUALITY):
    """``(data, syntax)``: the data set ``data`` (no file meta) in
    ``syntax`` as the compression code ``code`` wants it (lossy JPEG at
    ``quality``, LossyQuality); the same objects when it changes nothing.
    A code with two syntaxes (j3..j6) takes the second when the image
    cannot go in the first; a JPEG code's own quality (``jl50``) wins over
    ``quality``. TranscodeError (NKIError is one) when the codecs cannot
    do it, saying why for each syntax tried."""
    quality = qualityOf(code, quality)
    code = codeOf(code)
    if _leavesAsItIs(code, syntax):
        return data, syntax
    mode = NKI_MODES.get(code)
    if mode is not None:
        target = recodedSyntaxes(syntax, code)[0]
        data = transcode(data, syntax, target)
        compressed = nkipixels.compressDataset(data, target, mode)
        return (data if compressed is None else compressed), target
    if keepsNKI(code):
        return data, syntax
    data = nkipixels.withPlainPixels(data, syntax)
    size = SIZES.get(code)
    if size is not None:
        if not needsDownsizing(data, syntax, size):
            return data, syntax
        if isCompressed(syntax):
            data, syntax = transcode(data, syntax, EXPLICIT_VR_LITTLE_ENDIAN), EXPLICIT_VR_LITTLE_ENDIAN
        return downsizeDataset(data, syntax, size) or data, syntax
    errors = []
    for target in _targets(syntax, code):
        try:
            return transcode(data, syntax, target, quality), target
        except TranscodeError as e:
            errors.append(e)  # the next may take it: JPEG Extended a 12-bit image Baseline cannot
    if len(errors) == 1:
        raise errors[0]
    raise TranscodeError("; ".join(map(str, errors))) from errors[-1]


def _targets(syntax, code):
    """The syntaxes ``recode`` tries for ``code``, in order: those of the
    code that can be written here, else the one ``storedSyntax`` gives."""
    wanted = CODE_SYNTAXES.get(code, ())
    return [target for target in proposals(syntax, code) if target in wanted] or [storedSyntax(syntax, code)]


def recodedSyntaxes(syntax, code):
    """The transfer syntaxes ``recode`` may give an object in ``syntax``,
    the one it tries first first (for the downsizing codes: when it is not
    downsized)."""
    code = codeOf(code)
    if _leavesAsItIs(code, syntax):
        return [syntax]
    if code in NKI_MODES:
        return [syntax if syntax in nkipixels.SYNTAXES else EXPLICIT_VR_LITTLE_ENDIAN]
    return _targets(syntax, code)


def mayChange(data, syntax, code):
    """False when ``recode`` surely leaves the data set as it is; ``data``
    may be None when it is not at hand (then an object that may hold NKI
    pixel data counts as unchanged unless its syntax changes)."""
    code = codeOf(code)
    if _leavesAsItIs(code, syntax):
        return False
    if code in NKI_MODES:
        return True
    if keepsNKI(code):
        return False
    if code in SIZES:  # not at hand: to be read (an image that large is often spooled)
        return data is None or nkipixels.holdsNKI(data, syntax) or needsDownsizing(data, syntax, SIZES[code])
    return storedSyntax(syntax, code) != syntax or (data is not None and nkipixels.holdsNKI(data, syntax))


def forPeerChanges(code):
    """Whether ``forPeer`` changes data sets without NKI pixel data for a
    peer whose compression code is ``code`` (NKI codes, downsizing codes)."""
    return nkiMode(code) is not None or codeOf(code) in SIZES


def forPeer(data, syntax, code):
    """``(data, syntax)``: the data set ``data`` in ``syntax`` as it goes to
    a peer whose compression code is ``code``, before it is converted to a
    syntax the peer takes: as ``recode`` makes it for the NKI codes (NKI
    compressed pixel data, a Conquest peer; JPEG decompressed first, but
    "nj" leaves it) and the downsizing codes (decompressed first when it
    needs downsizing); for the other codes in its own syntax with any NKI
    pixel data decompressed ("compression is transparent for DICOM
    connections"). TranscodeError (NKIError is one) when it is damaged or
    the codecs cannot decompress it."""
    if forPeerChanges(code):
        return recode(data, syntax, code)
    return nkipixels.withPlainPixels(data, syntax), syntax
