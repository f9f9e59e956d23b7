"""Control commands listing definitions (manual appendix 6): ``get_sqldef``,
the database columns of dicom.sql, and ``get_dic``, the DICOM dictionary.

``get_sqldef:level,index,fmt``: ``level`` is patient, study, series, image
or worklist (or 0-4 in that order); ``fmt`` takes group, element, column
name, length, SQL type, DICOM type and the HL7 field (worklist; else '')
and defaults to Conquest's ``0x%4.4x, 0x%4.4x %20s %4d %10s %12s``
(``0x0010, 0x0020            PatientID   64 SQL_C_CHAR       DT_STR``).

``get_dic:index,fmt``: entry ``index`` of pydicom's data dictionary in tag
order (repeating groups excluded); ``fmt`` takes group, element, VR and
keyword, default ``(%04x,%04x) %s %s``.

An index past the last entry prints nothing.
"""

from pydicom.datadict import DicomDictionary

from pacscore.config.dicomsql import TABLES
from pacscore.control.arguments import ControlCommand, fields, number
from pacscore.control.context import CommandError, formatted

COLUMN_FORMAT = "0x%4.4x, 0x%4.4x %20s %4d %10s %12s"  # Conquest's get_sqldef default
DICTIONARY_FORMAT = "(%04x,%04x) %s %s"
_TAGS = sorted(DicomDictionary)


class GetSqlDef(ControlCommand):
    name = "get_sqldef"
    usage = "--get_sqldef:level,index,fmt  List any database field definition"
    readOnly = True

    def run(self, arguments, context):
        level, index, fmt = fields(arguments, 3)
        level = level.lower()
        if level.isascii() and level.isdigit() and int(level) < len(TABLES):
            level = TABLES[int(level)]
        if level not in TABLES:
            raise CommandError(f"level must be one of {', '.join(TABLES)} (or 0-4), not {level!r}")
        columns = getattr(context.archive.configuration.layout, level)
        position = number(index, "index")
        if position >= len(columns):
            return ""
        return columnLine(columns[position], fmt)


def columnLine(c, fmt=""):
    """One dicom.sql column as ``get_sqldef`` prints it."""
    return formatted(fmt or COLUMN_FORMAT, c.group, c.element, c.name, c.length, c.sqlType, c.dicomType,
                     c.hl7 or "")


class GetDic(ControlCommand):
    name = "get_dic"
    usage = "--get_dic:index,fmt  List any dicom dictionary item"
    readOnly = True

    def run(self, arguments, context):
        index, fmt = fields(arguments, 2)
        position = number(index, "index")
        if position >= len(_TAGS):
            return ""
        tag = _TAGS[position]
        vr, _, _, _, keyword = DicomDictionary[tag]
        return formatted(fmt or DICTIONARY_FORMAT, tag >> 16, tag & 0xFFFF, vr, keyword)
