"""The built-in Lua converter commands, ``lua "code"`` and ``lua:file``
(see pacscore.converters.lua).

Only instances live here; ``getPlugins(IConverterCommand, plugins)`` finds
them as it finds installed ones.
"""

from pacscore.converters.lua import LuaFileCommand, LuaInlineCommand

lua = LuaInlineCommand()
luaFile = LuaFileCommand()
