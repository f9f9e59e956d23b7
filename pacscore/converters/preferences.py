"""Converter commands that set how an object is kept (manual 7.2):
``storage MAG1`` (the preferred device), ``compression CC`` (the
preferred compression, manual 7.7) and ``testmode .1`` (text Conquest
appends to internal file names).  Their arguments are expanded when they
run; what they set is read by whoever runs the converters.
"""

from twisted.logger import Logger

from pacscore.codecs.syntaxes import isSupportedCode
from pacscore.converters.command import TextCommand
from pacscore.converters.context import Outcome


class Storage(TextCommand):
    name = "storage"
    scope = "I"

    def run(self, arguments, context):
        context.storageDevice = context.expand(arguments)
        return Outcome.CONTINUE


class Compression(TextCommand):
    """A code this installation cannot honour (vX, unknown ones) is logged and ignored: the object is kept as it came."""

    name = "compression"
    scope = "I"
    log = Logger()

    def run(self, arguments, context):
        code = context.expand(arguments)
        if isSupportedCode(code):
            context.compression = code
        else:
            self.log.warn("{converter}: compression {code!r} is not supported, ignored",
                          converter=context.converterName, code=code)
        return Outcome.CONTINUE


class SetTestMode(TextCommand):
    name = "testmode"
    textRequired = False

    def run(self, arguments, context):
        context.testMode = context.expand(arguments)
        return Outcome.CONTINUE
