"""The built-in Lua converter commands, ``lua "code"`` and ``lua:code`` (or ``lua:file.lua``)
(see pacscore.converters.lua).

Only instances live here; ``getPlugins(IConverterCommand, plugins)`` finds
them as it finds installed ones.
"""

from pacscore.converters.lua import LuaColonCommand, LuaInlineCommand

lua = LuaInlineCommand()
luaColon = LuaColonCommand()
