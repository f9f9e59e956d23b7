"""Conquest's Patient ID fixes.

FixPhilips and FixKodak (dicom.ini): Patient IDs of incoming objects
stripped of leading zeros, as Conquest does before it stores an object.

``FixPhilips = 1``: a 10-digit Patient ID starting with ``00`` (as a Philips
Expander CT writes it) and above 1000000 keeps its last 7 digits when it
starts with ``000``, else its last 8.  ``FixKodak = 1``: an 8-digit Patient
ID starting with ``0`` (as a Kodak RIS writes it) and above 1000000 loses
that zero.  Other IDs are kept.  Both run after WorkListMode and before the
import converters (manual, ImportConverterN); the amended data set is what
is written and indexed.

``kodakToNKI`` and ``nkiToKodak``: the rules of the ``fixkodak`` and
``unfixkodak`` converter commands, and of a ``,FIXKODAK`` virtual server.
"""

from twisted.logger import Logger

from pacscore.dicom.datasets import decodeDataset, encodeDataset
from pacscore.storage.attributes import readAttributes

PATIENT_ID = 0x00100020


def philipsFixed(patientID):
    """``0001234567`` -> ``1234567``, ``0012345678`` -> ``12345678``; others unchanged."""
    if len(patientID) == 10 and patientID.isdigit() and patientID.startswith("00") and int(patientID) > 1000000:
        return patientID[3:] if patientID[2] == "0" else patientID[2:]
    return patientID


def kodakFixed(patientID):
    """``kodakToNKI`` for an ID above 1000000: ``01234567`` -> ``1234567``,
    ``00123456`` unchanged."""
    return kodakToNKI(patientID) if patientID.isdigit() and int(patientID) > 1000000 else patientID


def kodakToNKI(patientID):
    """``01234567`` -> ``1234567``; other IDs unchanged."""
    if len(patientID) == 8 and patientID.isdigit() and patientID.startswith("0"):
        return patientID[1:]
    return patientID


def nkiToKodak(patientID):
    """``1234567`` -> ``01234567``; other IDs unchanged."""
    if len(patientID) == 7 and patientID.isdigit():
        return "0" + patientID
    return patientID


class PatientIDFixer:
    """``amend(attrs, data, transferSyntax)``: the data set with its Patient
    ID fixed, or None when it needs no fix."""

    log = Logger()

    def __init__(self, philips, kodak):
        self.rules = [rule for rule, on in ((philipsFixed, philips), (kodakFixed, kodak)) if on]

    @classmethod
    def fromIni(cls, ini):
        """The fixer dicom.ini asks for, or None."""
        philips, kodak = (ini.getint(key, 0) == 1 for key in ("FixPhilips", "FixKodak"))
        return cls(philips, kodak) if philips or kodak else None

    def fixed(self, patientID):
        for rule in self.rules:
            patientID = rule(patientID)
        return patientID

    def amend(self, attrs, data, transferSyntax):
        # The Patient ID of ``data``: WorkListMode may have changed the one in ``attrs``.
        current = readAttributes(data, transferSyntax, {PATIENT_ID}).get(PATIENT_ID, "")
        new = self.fixed(current)
        if new == current:
            return None
        dataset = decodeDataset(data, transferSyntax)
        dataset[PATIENT_ID].value = new
        self.log.info("Patient ID {old} fixed to {new} (FixPhilips/FixKodak)", old=current, new=new)
        return encodeDataset(dataset, transferSyntax)
