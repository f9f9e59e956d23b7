"""The built-in control commands of Conquest's logging options: log_on,
debuglog_on, debuglevel, get_freestore and testmode (manual appendix 6).

Only instances live here; ``getPlugins(IControlCommand, plugins)`` finds
them as it finds installed ones.
"""

from pacscore.control import devices, serverlog

logOn = serverlog.LogOn()
debugLogOn = serverlog.DebugLogOn()
debugLevel = serverlog.DebugLevel()
getFreeStore = devices.GetFreeStore()
testMode = devices.SetTestMode()
