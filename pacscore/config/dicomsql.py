"""dicom.sql: the database layout (manual 7.3).

Five tables (Patient, Study, Series, Image, WorkList), each a list of
``Column`` entries ``{ group, element, "Name", length, SQL_TYPE, DT_TYPE [, "HL7"] }``.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    """One ``{ 0x0010, 0x0020, "PatientID", 64, SQL_C_CHAR, DT_STR }`` line."""

    group: int
    element: int
    name: str
    length: int
    sqlType: str          # "SQL_C_CHAR", "SQL_C_DATE", ...
    dicomType: str        # "DT_STR", "DT_UI", "DT_DATE", "DT_TIME", "DT_MSTR", "DT_UINT16", "DT_STARTSEQUENCE", ...
    hl7: str | None = None  # WorkList only: "PID.5", "OBR.7.DATE", "---", "*AN" ...

    @property
    def tag(self) -> int:
        """The DICOM tag as one int, ``0xGGGGEEEE``."""
        return (self.group << 16) | self.element

    @property
    def isSequenceMarker(self) -> bool:
        """True for DT_STARTSEQUENCE / DT_ENDSEQUENCE lines (descriptive only)."""
        return self.dicomType in ("DT_STARTSEQUENCE", "DT_ENDSEQUENCE")


@dataclass
class DatabaseLayout:
    """The parsed dicom.sql. Column lists keep the file's order.

    The last column of study/series/image is Conquest's link to the level
    above (PatientID, StudyInstanceUID, SeriesInstanceUID).
    """

    patient: list[Column] = field(default_factory=list)
    study: list[Column] = field(default_factory=list)
    series: list[Column] = field(default_factory=list)
    image: list[Column] = field(default_factory=list)
    worklist: list[Column] = field(default_factory=list)
    path: str = "dicom.sql"

    def levels(self):
        """``[("patient", cols), ("study", cols), ("series", cols), ("image", cols)]``."""
        return [("patient", self.patient), ("study", self.study),
                ("series", self.series), ("image", self.image)]

    def indexedTags(self) -> set[int]:
        """Every tag the four image-level tables store (what a C-STORE must read)."""
        return {c.tag for _, cols in self.levels() for c in cols}
