"""``querympps``: the performed procedure steps modalities reported
(MPPS, ``pacscore.dicom.mpps``), newest first, the first ``max`` (default
1000): status, patient, accession number, modality, station, start, end."""

from pacscore.dicom.mpps import SHOWN
from pacscore.web.answers import htmlAnswer
from pacscore.web.html import table
from pacscore.web.listcap import askedRows, counted, cutNote, shownRows

HEADINGS = ("Status", "Patient ID", "Name", "Accession", "Study Instance UID", "Modality", "Station", "Step ID",
            "Description", "Start date", "Start time", "End date", "End time", "From")


async def queryMpps(archive, parameters):
    steps = archive.procedureSteps
    found = await archive.index.runQuery(steps.steps, askedRows(parameters))
    rows = [[step["Status"], *(step[column] for column, _, _ in SHOWN), step["CallingAE"]]
            for step in shownRows(found, parameters)]
    caption = f"{counted(found, parameters)} performed procedure steps (MPPS){cutNote(found, parameters)}"
    return htmlAnswer("performed procedure steps", table(caption, HEADINGS, rows))


MODES = {"querympps": queryMpps}
