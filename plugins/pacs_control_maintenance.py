"""The built-in control commands that rebuild, clear and prune the index
(manual appendix 6: maintenance options), and the archival options
movedatatodevice, renamedevice, testimages and verifymirrordisk.

Only instances live here; ``getPlugins(IControlCommand, plugins)`` finds
them as it finds installed ones.
"""

from pacscore.control import devices, maintenance

regen = maintenance.Regen()
regenDev = maintenance.RegenDev()
regenDevice = maintenance.RegenDev(
    "regendevice", "--regendevice:device  Re-generate database for single device (Conquest's dispatcher's spelling)")
regenDir = maintenance.RegenDir()
regenFile = maintenance.RegenFile()
initializeTables = maintenance.InitializeTables()
makeSpace = maintenance.MakeSpace()
verifyMirrorDisk = devices.VerifyMirrorDisk()
testImages = devices.ImageReadTest()
moveDataToDevice = devices.MoveDataToDevice()
renameDevice = devices.RenameDevice()
