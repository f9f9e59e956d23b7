"""HL7 v2 sample messages shared by the hl7 tests."""


def segment(segmentId, fields):
    """``segmentId|f1|f2...`` from ``{fieldNumber: text}`` (HL7 numbering)."""
    last = max(fields, default=0)
    return "|".join([segmentId] + [fields.get(n, "") for n in range(1, last + 1)])


def msh(controlId="MSG00001", messageType="ORM^O01^ORM_O01", charset="", version="2.5"):
    fields = {2: "^~\\&", 3: "RIS", 4: "KLINIKUM", 5: "PACS", 6: "RADIOLOGIE", 7: "20261201101500",
              9: messageType, 10: controlId, 11: "P", 12: version}
    if charset:
        fields[17] = "DEU"
        fields[18] = charset
    return "MSH|" + "|".join(fields.get(n, "") for n in range(2, max(fields) + 1))


PID = segment("PID", {1: "1", 3: "4711^^^KLINIKUM^MR", 4: "P-0815", 5: "Müller^Hans^^^Dr",
                      7: "198001011230", 8: "M"})
PV1 = segment("PV1", {1: "1", 2: "O", 3: "RAD^CT1^^KLINIKUM", 8: "98765^Haus^Gregory^^^Dr"})


def orc(control="NW", placer="PL100", filler="FL100"):
    return segment("ORC", {1: control, 2: placer, 3: filler, 5: "SC"})


def obr(accession="ACC100", service="CT123^CT HEAD", when="202612011030",
        modality="CT", station="CTSTATION1", setId="1"):
    return segment("OBR", {1: setId, 2: "PL100", 3: accession, 4: service, 7: when,
                           16: "1234^Welby^Marcus^^^Dr", 21: modality, 24: station,
                           27: "1^once^^20261201103000^^R"})


def orm(charset="8859/1", segments=None, controlId="MSG00001"):
    """A typical ORM^O01 as text (segments joined by CR)."""
    if segments is None:
        segments = [PID, PV1, orc(), obr()]
    return "\r".join([msh(controlId, charset=charset)] + segments) + "\r"


def encoded(text, charset):
    """``text`` in the Python codec for ``charset`` (the tests' MSH-18 values)."""
    return text.encode({"8859/1": "latin-1", "UNICODE UTF-8": "utf-8", "": "ascii"}[charset])
