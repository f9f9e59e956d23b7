"""The plugins of a plugin package, checked before use.

Database drivers, converter commands and control commands all come from
here rather than from ``twisted.plugin.getPlugins`` directly: a plugin
that lacks what its interface asks for (``zope.interface.verify.verifyObject``)
or whose ``name`` is not a word, or one named as a plugin found before it
is, is left out with one log line naming it, and the archive goes on with
the rest.  pacs's own plugin modules (``pacs_*``) are looked at first, then
the others by module name, whatever order a dropin.cache lists them in (a
non-editable install puts them all in one folder).  An object that several
plugin modules hold (one imported by another) is one plugin.
"""

from types import ModuleType

from twisted.logger import Logger, LogLevel
from twisted.plugin import getCache
from zope.interface.exceptions import BrokenImplementation, BrokenMethodImplementation, Invalid
from zope.interface.verify import verifyObject

import plugins


def named(plugin):
    """The dotted name of ``plugin``: the module or class it is, else its class."""
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    kind = plugin if isinstance(plugin, type) else type(plugin)
    return f"{kind.__module__}.{kind.__qualname__}"


def _where(plugin, module):
    """``plugin`` named, with the plugin module holding it when that is not
    where it is defined (a plugin module may import it)."""
    name = named(plugin)
    return name if name == module or name.startswith(module + ".") else f"{name} (in {module})"


def _problem(error):
    """One ``verifyObject`` failure in a few words."""
    if isinstance(error, BrokenImplementation):
        return f"no {getattr(error.name, '__name__', error.name)}"
    if isinstance(error, BrokenMethodImplementation):
        return f"{getattr(error.method, '__name__', error.method)}: {error.mess}"
    return " ".join(str(error).split())


def _order(dropin):
    """Where a plugin module comes in the search: pacs's own (``pacs_*``)
    first, then the others, each by name."""
    module = dropin.moduleName.rpartition(".")[2]
    return not module.startswith("pacs_"), module


def pluginKey(plugin):
    """What two plugins' names must not share: lower case, single spaces."""
    return " ".join(plugin.name.lower().split())


class PluginSet:
    """The plugins of ``package`` (a module object), by interface."""

    log = Logger()

    def __init__(self, package):
        self.package = package
        self._providers = {}

    def _found(self, interface):
        """``(plugin, its plugin module's name)`` for every object of the
        package's plugin modules that provides ``interface``, pacs's own
        modules first, then the others by name (see ``_order``)."""
        for dropin in sorted(getCache(self.package).values(), key=_order):
            for cached in dropin.plugins:
                try:
                    plugin = interface(cached, None)
                except Exception:
                    self.log.failure("plugin module {module} cannot be loaded; its plugins are not available",
                                     level=LogLevel.error, module=dropin.moduleName)
                    continue
                if plugin is not None:
                    yield plugin, dropin.moduleName

    def _usable(self, interface, plugin, module):
        try:
            verifyObject(interface, plugin)
        except Invalid as e:
            problems = [_problem(each) for each in getattr(e, "exceptions", [e])]
        else:
            name = plugin.name
            problems = [] if isinstance(name, str) and name.strip() else [f"name {name!r} is not a word"]
        if problems:
            self.log.error("plugin {plugin} is not a usable {interface} ({problems}); it is not available",
                           plugin=_where(plugin, module), interface=interface.__name__,
                           problems=", ".join(problems))
        return not problems

    def _chosen(self, interface):
        """``(plugin, its plugin module's name)`` of each plugin ``providing``
        gives."""
        chosen, seen = {}, set()
        for plugin, module in self._found(interface):
            if id(plugin) in seen:
                continue
            seen.add(id(plugin))
            if not self._usable(interface, plugin, module):
                continue
            key = pluginKey(plugin)
            if key in chosen:
                self.log.error("plugin {plugin} is an {interface} named {name!r} as {first} is; "
                               "it is not available", plugin=_where(plugin, module),
                               interface=interface.__name__, name=key, first=_where(*chosen[key]))
                continue
            chosen[key] = plugin, module
        return chosen.values()

    def providing(self, interface):
        """Every plugin that provides ``interface``, has what it asks for
        and has a name of its own."""
        if interface not in self._providers:
            self._providers[interface] = [plugin for plugin, _ in self._chosen(interface)]
        return self._providers[interface]


installed = PluginSet(plugins)
"""The plugins of the ``plugins`` package: built-in and installed ones."""
