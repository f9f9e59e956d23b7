"""Running converter lines in tests: the built-in commands of
plugins/pacs_commands_flow.py plus ``mark``, which appends its argument
to the variable %x so a test sees which statements ran, in which order."""

import os
import time
from types import SimpleNamespace

from pydicom import Dataset
from zope.interface import implementer

from pacscore.converters.context import ConverterContext, ConverterServices, Outcome
from pacscore.converters.registry import CommandRegistry
from pacscore.converters.script import parseScript
from pacscore.interfaces import IConverterCommand
from plugins import pacs_commands_flow


@implementer(IConverterCommand)
class Mark:
    name = "mark"
    scope = "IE"
    condition = False

    def parse(self, arguments, where):
        return arguments

    def run(self, arguments, context):
        context.variables["x"] += arguments
        return Outcome.CONTINUE


KEYS = {"import": "ImportConverter3", "export": "ExportConverter3"}

BUILT_IN = [command for command in vars(pacs_commands_flow).values()
            if IConverterCommand.providedBy(command)]


def registry(*extra):
    """The built-in commands of this module's plugins, ``mark`` and ``extra``."""
    return CommandRegistry(BUILT_IN + [Mark(), *extra])


def patientDataset():
    dataset = Dataset()
    dataset.PatientID = "123"
    dataset.Modality = "RTPLAN"
    return dataset


def context(kind="import", workdir=None, wallClock=time.time, variables=None):
    """A context on ``patientDataset()``; ``workdir`` gives it a
    configuration whose working folder it is; ``wallClock`` tells the time
    of day."""
    configuration = SimpleNamespace(workdir=os.path.abspath(workdir)) if workdir else None
    return ConverterContext(kind, patientDataset(), callingAE="SENDER", calledAE="ARCHIVE",
                            services=ConverterServices(configuration=configuration, wallClock=wallClock),
                            converterName=KEYS[kind],
                            variables=variables)


def run(text, kind="import", commands=None, **contextArguments):
    """``(outcome, marks, context)`` of running ``text`` once."""
    script = parseScript(text, KEYS[kind], commands or registry(), kind)
    lineContext = context(kind, **contextArguments)
    outcome = script.run(lineContext)
    return outcome, lineContext.variables["x"], lineContext
