"""``stamp "text"``: an import converter command that writes the expanded
text into Image Comments (0020,4000). An example of a converter command
shipped by a third party."""

from twisted.plugin import IPlugin
from zope.interface import implementer

from pacscore.converters.context import ConverterSyntaxError, Outcome
from pacscore.interfaces import IConverterCommand

IMAGE_COMMENTS = 0x00204000


@implementer(IPlugin, IConverterCommand)
class StampCommand:
    name = "stamp"
    scope = "I"
    condition = False

    def parse(self, arguments, where):
        if len(arguments) < 2 or not (arguments.startswith('"') and arguments.endswith('"')):
            raise ConverterSyntaxError(f"{where}: stamp needs a quoted text")
        return arguments[1:-1]

    def run(self, text, context):
        context.dataset.add_new(IMAGE_COMMENTS, "LT", context.expand(text))
        context.changed = True
        return Outcome.CONTINUE
