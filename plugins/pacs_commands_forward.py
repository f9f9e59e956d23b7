"""Built-in converter commands that queue work for later (manual 7.2):
forward (to, compressed as, patient/study/series, full syntax), get,
delete patient/study/series/image, process, prefetch, preretrieve, copy."""

from pacscore.export.commands import (
    CopyCommand, DeleteCommand, ForwardCommand, GetCommand, PrefetchCommand, PreretrieveCommand, ProcessCommand)

forwardCommand = ForwardCommand()
forwardToCommand = ForwardCommand("forward to", "E", prefix="to ")
forwardCompressedCommand = ForwardCommand("forward compressed as", "E", prefix="compressed as ")
getCommand = GetCommand()
deletePatientCommand = DeleteCommand("patient")
deleteStudyCommand = DeleteCommand("study")
deleteSeriesCommand = DeleteCommand("series")
deleteImageCommand = DeleteCommand("image")
processCommand = ProcessCommand()
prefetchCommand = PrefetchCommand()
preretrieveCommand = PreretrieveCommand("preretrieve")
preretriveCommand = PreretrieveCommand("preretrive")
copyCommand = CopyCommand()
