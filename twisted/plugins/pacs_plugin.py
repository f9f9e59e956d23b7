"""Twisted dropin: makes ``twistd pacs`` available.

This folder must not hold an ``__init__.py``: ``twisted.plugins`` is
Twisted's own package and finds this file through ``pluginPackagePaths``.
"""

from twisted.application.service import ServiceMaker

pacs = ServiceMaker(
    "pacs",
    "tap.pacs",
    "A DICOM archive (PACS): storage, query/retrieve, worklist, HL7, web, control port",
    "pacs",
)
