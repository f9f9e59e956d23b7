"""The one exception every configuration reader raises."""


class ConfigError(Exception):
    """A configuration file could not be read; names the file and line.

    ``str(error)`` is the message shown to the user at start-up, e.g.
    ``etc/dicom.sql:42: expected '}' after the Image table``.
    """

    def __init__(self, path, line, message):
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self):
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"
