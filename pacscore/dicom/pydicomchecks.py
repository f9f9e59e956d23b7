"""pydicom's checks of the values it reads, left to pacs.

pydicom validates every value it reads or is given (``Invalid value for VR
IS: '1-3'``) and every Specific Character Set term (``Unknown encoding
'ISO_IR 999' - using default encoding instead``) and, in its default mode,
reports what it finds as a Python warning, which Twisted's log writes as an
anonymous ``twisted.logger._global`` line naming a file of pydicom's: not
the peer, the association or the object, and once per distinct value.
pacs checks what it uses itself, where it can name them: a peer's
identifier keys (``pacscore.dicom.identifiers``: refused with a line
naming the peer, or named in one line per request when taken as they
are), stored values (``pacscore.storage.attributes``) and the terms
of a stored object's character set (the store names them for each object).
``install`` (which the general decoder, ``pacscore.dicom.textbytes``,
calls when imported) turns pydicom's reports of these off; its other
warnings stay.
"""

import warnings

from pydicom import config

# pydicom's warning for a term it reads as Latin-1 (pydicom.charset).
_UNKNOWN_TERM = r"Unknown encoding '"


def install():
    """Have pydicom read values without validating them, and say nothing of
    character set terms it does not know (once)."""
    config.settings.reading_validation_mode = config.IGNORE
    warnings.filterwarnings("ignore", _UNKNOWN_TERM, UserWarning, r"pydicom\.")
