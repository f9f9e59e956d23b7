"""The built-in converter commands that steer a line, test values, set how
an object is kept, and write files or run programs (manual 7.2).

Only instances live here; ``getPlugins(IConverterCommand, plugins)`` finds
them as it finds installed ones.
"""

from pacscore.converters import conditions, external, flow, preferences

nop = flow.Nop()
stop = flow.Stop()
silentStop = flow.SilentStop()
returnCommand = flow.Return()
destroy = flow.Destroy()
reject = flow.Reject()
defer = flow.Defer()
call = flow.Call()

storage = preferences.Storage()
compression = preferences.Compression()
testMode = preferences.SetTestMode()

write = external.Write()
append = external.Append()
system = external.System()
makeFolder = external.MakeFolder()
removeFile = external.RemoveFile()

ifNotEmpty = conditions.IfNotEmpty()
ifEmpty = conditions.IfEmpty()
ifEqual = conditions.IfEqual()
ifNotEqual = conditions.IfNotEqual()
ifMatch = conditions.IfMatch()
ifNotMatch = conditions.IfNotMatch()
ifNumEqual = conditions.IfNumEqual()
ifNumNotEqual = conditions.IfNumNotEqual()
ifNumGreater = conditions.IfNumGreater()
ifNumLess = conditions.IfNumLess()
between = conditions.Between()
