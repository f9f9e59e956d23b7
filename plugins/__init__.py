"""The PACS plugin package.

Built-in database drivers and converter commands live here as dropins, and
installed plugin eggs/wheels add modules to the same package: its
``__path__`` is extended with every ``plugins`` folder on ``sys.path``, so
``twisted.plugin.getPlugins(IThing, plugins)`` sees them all.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
