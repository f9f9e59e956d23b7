"""The built-in control commands about the server itself: ``display_status``
and ``quit``. Only instances live here; ``getPlugins(IControlCommand,
plugins)`` finds them as it finds installed ones."""

from pacscore.control import server

displayStatus = server.DisplayStatus()
quitServer = server.Quit()
