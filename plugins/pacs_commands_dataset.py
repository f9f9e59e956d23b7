"""Built-in converter commands that change the data set (manual 7.2):
set, setifempty, delete gggg,eeee, newuids, fixkodak, unfixkodak,
save to, process with."""

from pacscore.converters.dataset import (
    DeleteElementCommand, PatientIDCommand, SetCommand, SetIfEmptyCommand)
from pacscore.storage.patientids import kodakToNKI, nkiToKodak
from pacscore.converters.newuids import NewUIDsCommand
from pacscore.converters.saving import ProcessWithCommand, SaveToCommand

setCommand = SetCommand()
setIfEmptyCommand = SetIfEmptyCommand()
deleteElementCommand = DeleteElementCommand()
newUIDsCommand = NewUIDsCommand()
fixKodakCommand = PatientIDCommand("fixkodak", kodakToNKI)
unfixKodakCommand = PatientIDCommand("unfixkodak", nkiToKodak)
saveToCommand = SaveToCommand()
processWithCommand = ProcessWithCommand()
