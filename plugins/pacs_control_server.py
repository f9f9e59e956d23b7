"""The built-in control commands about the server itself: ``display_status``,
``quit``, and ``lua`` / ``dolua`` (a Lua chunk run in the server) and
``luastart`` (one started there). Only
instances live here; ``getPlugins(IControlCommand, plugins)`` finds them as
it finds installed ones."""

from pacscore.control import luachunks, server

displayStatus = server.DisplayStatus()
quitServer = server.Quit()
lua = luachunks.RunLua()
dolua = luachunks.RunLua("dolua", "--dolua:chunk  Run lua chunk in the server (as --lua:), its print output returned")
luastart = luachunks.StartLua()
