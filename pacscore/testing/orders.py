"""HL7 ORM^O01 order messages for tests and benchmarks.

``orderMessage`` writes the kind of new/change/cancel order a RIS sends,
with the fields the default etc/dicom.sql WorkList mapping reads (PID-4,
PID-5, PID-7, PID-8, OBR-3 accession number, OBR-4 procedure, OBR-7 start,
OBR-16, OBR-21 modality, OBR-24 station name, OBR-27 priority) plus OBR-18
for a scheduled station AE title, encoded in the MSH-18 character set.
"""

CODECS = {"": "ascii", "ASCII": "ascii", "8859/1": "latin-1", "UNICODE UTF-8": "utf-8"}


def _segment(name, fields):
    """``name|f1|f2...`` from ``{number: value}`` (HL7 field numbers)."""
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join([name] + values)


def orderMessage(controlId, accession, patientID, patientName, control="NW", modality="CT",
                 start="202612020930", stationAE="", stationName="", procedure=("CT123", "CT HEAD"),
                 birthDate="19800101", sex="M", physician="1234^House^Gregory", priority="R",
                 charset="UNICODE UTF-8", messageType="ORM^O01"):
    """The bytes of one order message (segments separated by CR)."""
    segments = [
        "MSH|^~\\&|RIS|HOSPITAL|PACS|HOSPITAL|20261202080000||" + messageType
        + f"|{controlId}|P|2.3.1||||||{charset}".rstrip("|"),
        _segment("PID", {1: "1", 3: patientID, 4: patientID, 5: patientName, 7: birthDate, 8: sex}),
        _segment("PV1", {1: "1", 2: "O"}),
        _segment("ORC", {1: control, 2: f"P{accession}", 3: accession, 5: "SC"}),
        _segment("OBR", {1: "1", 2: f"P{accession}", 3: accession, 4: "^".join(procedure), 7: start,
                         16: physician, 18: stationAE, 21: modality, 24: stationName,
                         27: f"^^^^^{priority}"}),
    ]
    return "\r".join(segments).encode(CODECS[charset])


def writeMessages(path, messages):
    """A file of messages, one segment per line (the way RIS exports look)."""
    with open(path, "wb") as f:
        f.write(b"\n".join(m.replace(b"\r", b"\n") for m in messages) + b"\n")
