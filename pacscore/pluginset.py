"""The plugins of a plugin package, checked before use.

Database drivers, converter commands and control commands all come from
here rather than from ``twisted.plugin.getPlugins`` directly: a plugin
that lacks what its interface asks for (``zope.interface.verify.verifyObject``)
is left out with one log line naming it, and the archive goes on with the
rest.
"""

from types import ModuleType

from twisted.logger import Logger
from twisted.plugin import getPlugins
from zope.interface.exceptions import BrokenImplementation, BrokenMethodImplementation, Invalid
from zope.interface.verify import verifyObject

import plugins


def _named(plugin):
    """The dotted name of ``plugin``: the module or class it is, else its class."""
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    kind = plugin if isinstance(plugin, type) else type(plugin)
    return f"{kind.__module__}.{kind.__qualname__}"


def _problem(error):
    """One ``verifyObject`` failure in a few words."""
    if isinstance(error, BrokenImplementation):
        return f"no {getattr(error.name, '__name__', error.name)}"
    if isinstance(error, BrokenMethodImplementation):
        return f"{getattr(error.method, '__name__', error.method)}: {error.mess}"
    return " ".join(str(error).split())


class PluginSet:
    """The plugins of ``package`` (a module object), by interface."""

    log = Logger()

    def __init__(self, package):
        self.package = package
        self._providers = {}

    def _usable(self, interface, plugin):
        try:
            verifyObject(interface, plugin)
        except Invalid as e:
            self.log.error("plugin {plugin} is not a usable {interface} ({problems}); it is not available",
                           plugin=_named(plugin), interface=interface.__name__,
                           problems=", ".join(_problem(each) for each in getattr(e, "exceptions", [e])))
            return False
        return True

    def providing(self, interface):
        """Every plugin that provides ``interface`` and has what it asks for."""
        if interface not in self._providers:
            self._providers[interface] = [plugin for plugin in getPlugins(interface, self.package)
                                          if self._usable(interface, plugin)]
        return self._providers[interface]


installed = PluginSet(plugins)
"""The plugins of the ``plugins`` package: built-in and installed ones."""
