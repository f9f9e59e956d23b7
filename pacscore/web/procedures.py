"""``querympps``: the performed procedure steps modalities reported
(MPPS, ``pacscore.dicom.mpps``), newest first, the first ``max`` (default
1000): status, patient, accession number, modality, station, start, end."""

from pacscore.dicom.mpps import SHOWN
from pacscore.web.answers import htmlAnswer
from pacscore.web.html import table
from pacscore.web.listcap import MOST_ROWS
HEADINGS = ("Status", "Patient ID", "Name", "Accession", "Study Instance UID", "Modality", "Station", "Step ID",
            "Description", "Start date", "Start time", "End date", "End time", "From")


async def queryMpps(archive, parameters):
    steps = archive.procedureSteps
    found = await archive.index.runQuery(steps.steps, parameters.number("max", MOST_ROWS, low=1, high=100000))
    rows = [[step["Status"], *(step[column] for column, _, _ in SHOWN), step["CallingAE"]] for step in found]
    return htmlAnswer("performed procedure steps", table(f"{len(rows)} performed procedure steps (MPPS)", HEADINGS,
                                                         rows))


MODES = {"querympps": queryMpps}
