"""Built-in converter commands that change the data set (manual 7.2):
set, setifempty, delete gggg,eeee, newuids, fixkodak, unfixkodak,
save to, process with, virtualserver, virtualservermask."""

from pacscore.converters.dataset import (
    DeleteElementCommand, PatientIDCommand, SetCommand, SetIfEmptyCommand, VirtualServersCommand)
from pacscore.converters.newuids import NewUIDsCommand
from pacscore.converters.saving import ProcessWithCommand, SaveToCommand
from pacscore.storage.patientids import kodakToNKI, nkiToKodak

setCommand = SetCommand()
setIfEmptyCommand = SetIfEmptyCommand()
deleteElementCommand = DeleteElementCommand()
newUIDsCommand = NewUIDsCommand()
fixKodakCommand = PatientIDCommand("fixkodak", kodakToNKI)
unfixKodakCommand = PatientIDCommand("unfixkodak", nkiToKodak)
saveToCommand = SaveToCommand()
processWithCommand = ProcessWithCommand()
virtualServerCommand = VirtualServersCommand("virtualserver", lambda n: 1 << n)
virtualServerMaskCommand = VirtualServersCommand("virtualservermask", lambda n: n)
