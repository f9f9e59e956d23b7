"""Transfer syntaxes: what to propose when sending a stored object, what
to store an incoming one in, and what this installation can read and write.

Objects are stored as received, in whatever transfer syntax, unless a
compression code asks for another (IncomingCompression, DroppedFileCompression,
the ``~xx`` of the called AE title, a converter's ``compression``):
``storedSyntax`` says which, the first of ``proposals``. When one is sent (C-MOVE/C-GET sub-operations, forwarding) ``proposals`` lists,
best first, the transfer syntaxes to propose for it, from the syntax it is
stored in and the Conquest compression code of the destination (the
acrnema.map column, "forward compressed as xx", or the ``~xx`` suffix of a
called AE title; manual section 7.7).

The codes and the transfer syntaxes they ask for. The JPEG mapping is the
one Conquest's own JPEG compressor (jpegconv.cpp, ``CompressJPEGL``) writes
in (0002,0010); there j3/j4 and j5/j6 pick the syntax by the image's
precision, here the first one listed is tried first and the second when
the image cannot go in it (JPEG Baseline takes 8-bit images only):

====  ==========================================  ===========================
code  Conquest                                    proposed first
====  ==========================================  ===========================
as    as is                                       the stored syntax
un    uncompressed                                explicit, implicit VR LE
j1    JPEG lossless, first-order prediction       1.2.840.10008.1.2.4.70
j2    JPEG lossless, process 14 (predictor 6)     1.2.840.10008.1.2.4.57
j3    JPEG lossy, 8 bits baseline / 12 extended   1.2.840.10008.1.2.4.50, .51
j4    JPEG lossy, 12 bits extended / 8 baseline   1.2.840.10008.1.2.4.51, .50
j5    JPEG lossy progressive (retired 4.53 and    as j3: 1.2.840.10008.1.2.4.50,
      4.55 in Conquest)                           .51
j6    as j5                                       as j4: 1.2.840.10008.1.2.4.51,
                                                  .50
jk    JPEG 2000 lossless                          1.2.840.10008.1.2.4.90
jl    JPEG 2000 lossy                             1.2.840.10008.1.2.4.91
js    JPEG-LS lossless                            1.2.840.10008.1.2.4.80
j7    JPEG-LS near-lossless                       1.2.840.10008.1.2.4.81, .80
ui    uncompressed, implicit VR little endian     1.2.840.10008.1.2
ul    uncompressed, explicit VR little endian     1.2.840.10008.1.2.1
ub    uncompressed, explicit VR big endian        1.2.840.10008.1.2.2
====  ==========================================  ===========================

(js, j7, ui, ul and ub are in Conquest's code, not its manual.)

The retired spectral selection / progressive syntaxes (4.53, 4.55) that
Conquest writes for j5/j6 are never proposed: few peers accept them and
nothing here reads or writes them, so j5/j6 ask for the non-retired lossy
JPEG syntaxes instead.

Note j1 is the SV1 syntax (4.70) and j2 the general process 14 one
(4.57): Conquest compresses j1 with predictor 1, j2 with predictor 6; our
encoder (``pacscore.codecs.jpeglossless``) uses predictor 1 for both.

A code's syntaxes are proposed only when the object can go in them: it is
already stored that way (then that one comes first), or ``canEncode`` says
this installation can produce it. Then come the stored syntax and the
uncompressed ones, so a peer that refuses the compression still gets the
object (Conquest: "images will automatically be sent with simpler
compression or uncompressed"). pydicom has no JPEG (ISO 10918) encoder:
the lossless ones (j1, j2) are written by ``pacscore.codecs.jpeglossless``,
the lossy ones (j3..j6) by ``pacscore.codecs.jpeglossy``.
"un" proposes explicit then implicit VR little endian, after the stored
syntax when that is uncompressed too (big endian, deflated): no
conversion when the peer takes it.

The NKI codes (n1..n4, nj, uj) keep the object in a native syntax and
NKI compress its pixel data or not, the downsizing ones (k1..kc) subsample
its image (``pacscore.codecs.compression``), the script ones (s0..s9) run
a converter line on it (``pacscore.converters.hooks``): ``proposals``
treats them as "as", and so any unknown code (vX ...); ``isSupportedCode``
tells the caller so it can log it.

A code none of whose syntaxes this installation can write (no JPEG-LS or
JPEG 2000 encoder installed: js, j7, jk, jl) is as "as" too; ``unencodable``
warns of it once per code, when start-up finds it configured or when an
object first meets it.

Codes are compared case-insensitively; None or "" means "as".
"""

import re
from functools import lru_cache

from twisted.logger import Logger

from pacscore.dicom.uids import isUID

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

# Our preference among the uncompressed syntaxes every peer must take one of.
UNCOMPRESSED = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
# The syntax of a bare data set (Conquest's .v2, no file meta) by the
# (implicit VR, little endian) pydicom found it encoded in (original_encoding).
SYNTAX_OF_ENCODING = {(True, True): IMPLICIT_VR_LITTLE_ENDIAN, (False, True): EXPLICIT_VR_LITTLE_ENDIAN,
                      (False, False): EXPLICIT_VR_BIG_ENDIAN}

# Pixel data not encapsulated (PS3.5 A.1, A.2, A.3, A.5).
NATIVE = frozenset({
    IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN,
})

# Encoded by pacscore.codecs.jpeglossless and jpeglossy rather than pydicom.
JPEG_LOSSLESS_SYNTAXES = frozenset({JPEG_LOSSLESS, JPEG_LOSSLESS_SV1})
JPEG_LOSSY_SYNTAXES = frozenset({JPEG_BASELINE, JPEG_EXTENDED})

# Syntaxes whose pixel data is, or may be, lossy compressed.
_LOSSY = frozenset(
    ["1.2.840.10008.1.2.4." + str(n) for n in (
        50, 51, 52, 53, 54, 55, 56,          # JPEG lossy processes (52..56 retired)
        59, 60, 61, 62, 63, 64,              # JPEG hierarchical lossy (retired)
        81,                                  # JPEG-LS near-lossless
        91, 93,                              # JPEG 2000 (part 1, part 2), lossless or lossy
        100, 101, 102, 103, 104, 105, 106,   # MPEG-2, MPEG-4 AVC/H.264
        107, 108,                            # HEVC/H.265
        111, 112,                            # JPEG XL JPEG recompression, JPEG XL
        203,                                 # HTJ2K, lossless or lossy
    )])

# code -> the syntaxes it asks for, preferred first.
CODE_SYNTAXES = {
    "j1": (JPEG_LOSSLESS_SV1,),
    "j2": (JPEG_LOSSLESS,),
    "j3": (JPEG_BASELINE, JPEG_EXTENDED),
    "j4": (JPEG_EXTENDED, JPEG_BASELINE),
    "j5": (JPEG_BASELINE, JPEG_EXTENDED),
    "j6": (JPEG_EXTENDED, JPEG_BASELINE),
    "jk": (JPEG_2000_LOSSLESS,),
    "jl": (JPEG_2000,),
    "js": (JPEG_LS_LOSSLESS,),
    "j7": (JPEG_LS_NEAR_LOSSLESS, JPEG_LS_LOSSLESS),
    "ui": (IMPLICIT_VR_LITTLE_ENDIAN,),
    "ul": (EXPLICIT_VR_LITTLE_ENDIAN,),
    "ub": (EXPLICIT_VR_BIG_ENDIAN,),
}
# Codes for one uncompressed syntax: as "un", never the stored syntax if compressed.
NATIVE_CODES = frozenset({"ui", "ul", "ub"})

AS_IS = "as"
_WITH_QUALITY = re.compile(r"^(j[0-9a-z])([0-9]{1,3})$")
UNCOMPRESSED_CODE = "un"
NKI_CODES = frozenset({"n1", "n2", "n3", "n4", "nj", "uj"})
DOWNSIZING_CODES = frozenset({"k1", "k2", "k4", "k8", "ka", "kb", "kc"})
SCRIPT_CODES = frozenset(f"s{n}" for n in range(10))  # run CompressionConverterN, the syntax as it is
SUPPORTED_CODES = (frozenset(CODE_SYNTAXES) | NKI_CODES | DOWNSIZING_CODES | SCRIPT_CODES
                   | {AS_IS, UNCOMPRESSED_CODE})


def _clean(syntax):
    """A UID as it may come from a file or the database, without padding."""
    return syntax.rstrip("\x00 ") if syntax else ""


def codeOf(compression):
    """A compression code as compared: lower case, "as" for none, without
    the quality a JPEG code may carry (``jl50``: ``jl``)."""
    code = (compression or AS_IS).strip().lower() or AS_IS
    match = _WITH_QUALITY.match(code)
    return match.group(1) if match else code


def qualityOf(compression, default):
    """The quality a JPEG code carries after its two letters, as Conquest
    reads it (``j390``, ``jl50``; over 100 is 100), else (or 0) ``default``
    (LossyQuality)."""
    match = _WITH_QUALITY.match((compression or "").strip().lower())
    quality = int(match.group(2)) if match else 0
    return min(quality, 100) if quality > 0 else default


def isCompressed(syntax):
    """True when ``syntax`` encapsulates its pixel data (everything but the
    three uncompressed syntaxes and deflate, which compresses the whole
    data set but leaves pixel data native)."""
    return _clean(syntax) not in NATIVE


def isLossy(syntax):
    """True when pixel data in ``syntax`` is or may be lossy compressed."""
    return _clean(syntax) in _LOSSY


def isSupportedCode(compression):
    """True when the compression code ``compression`` is honoured here
    (None or "" count as "as"); False for unknown codes (vX ...),
    which are taken as "as"."""
    return codeOf(compression) in SUPPORTED_CODES


@lru_cache(maxsize=None)
def _available(syntax, encode):
    if not isUID(syntax):
        return False
    try:
        from pydicom.pixels import get_decoder, get_encoder
        from pydicom.uid import UID
        uid = UID(syntax)
        coder = get_encoder(uid) if encode else get_decoder(uid)
        return bool(coder.is_available)
    except Exception:  # no coder at all for it: NotImplementedError, ImportError ...
        return False


def canDecode(syntax):
    """True when the pixel data of an object in ``syntax`` can be read here
    (pydicom and its installed plugins); always for the uncompressed ones."""
    syntax = _clean(syntax)
    return syntax in NATIVE or _available(syntax, False)


def canEncode(syntax):
    """True when pixel data can be written in ``syntax`` here (pydicom and
    its installed plugins, our JPEG encoders); always for the
    uncompressed ones."""
    syntax = _clean(syntax)
    return (syntax in NATIVE or syntax in JPEG_LOSSLESS_SYNTAXES or syntax in JPEG_LOSSY_SYNTAXES
            or _available(syntax, True))


class UnencodableCodes:
    """Warns once per compression code that asks for transfer syntaxes none
    of which can be written here (``canEncode``), saying what is done
    instead."""

    log = Logger()

    def __init__(self):
        self.warned = set()

    def check(self, compression, setting=None):
        """Warn, unless done already, when ``compression`` cannot be encoded
        here; ``setting`` names where it is configured (``IncomingCompression``)."""
        code = codeOf(compression)
        wanted = CODE_SYNTAXES.get(code, ())
        if code in self.warned or code in NATIVE_CODES or not wanted or any(map(canEncode, wanted)):
            return
        self.warned.add(code)
        from pydicom.uid import UID
        self.log.warn("{where}: {syntaxes} cannot be encoded on this installation (no encoder installed); "
                      "objects are stored and sent in the transfer syntax they have instead (uncompressed to a "
                      "peer that does not accept it)",
                      where=f"{setting} = {code}" if setting else f"compression code {code}",
                      syntaxes=" or ".join(f"{UID(syntax).name} ({syntax})" for syntax in wanted))


unencodable = UnencodableCodes()


def _unique(syntaxes):
    return list(dict.fromkeys(syntaxes))


def proposals(storedSyntax, compression):
    """The transfer syntaxes to propose, best first, for an object stored in
    ``storedSyntax`` going to a destination with Conquest compression code
    ``compression`` (see the module docstring). Never empty, no duplicates;
    always ends with the uncompressed syntaxes."""
    stored = _clean(storedSyntax)
    code = codeOf(compression)
    if code == UNCOMPRESSED_CODE:
        first = [stored] if stored in NATIVE else []
        return _unique(first + list(UNCOMPRESSED))
    if code in NATIVE_CODES:
        return _unique(list(CODE_SYNTAXES[code]) + list(UNCOMPRESSED))
    wanted = CODE_SYNTAXES.get(code, ())
    unencodable.check(code)
    first = [syntax for syntax in wanted if syntax == stored or canEncode(syntax)]
    if stored in first:  # already compressed as asked: no conversion at all
        first.remove(stored)
        first.insert(0, stored)
    return _unique(first + ([stored] if stored else []) + list(UNCOMPRESSED))


def storedSyntax(incomingSyntax, compression):
    """The transfer syntax to store an object that came in ``incomingSyntax``
    in, under the Conquest compression code ``compression``: the first of
    ``proposals``, so ``incomingSyntax`` itself for "as", for "un" on
    uncompressed data, for codes not supported here, and for codes whose
    syntaxes cannot be written here."""
    return proposals(incomingSyntax, compression)[0]
