"""Converter lines of dicom.ini changed on a running server (``put_param``,
``delete_param``, ``read_ini``), taken at once as Conquest takes them
(manual, appendix 3: "most items can be changed while the server is
running except ExportConverters").

The commands parse the lines of dicom.ini as edited in the I/O pool, with
the file's other checks (``pacscore.control.configuration``); one that does
not parse is refused (the server would not start with it) and the command
changes nothing.  Once the file is saved, ``use`` gives the archive the new
lines (``Archive.useConverterRules``, on the reactor thread) and names the
keys changed that wait for the next start:

- the import lines (``ImportConverterN`` and its Modality, StationName,
  CalledAE and CallingAE filters, ``ImportConverters``) run on each object
  whose storing starts from then on, in an association already open too;
  an object being stored keeps the lines it began with;
- the export lines (``ExportConverterN``, its filters, ``ExportFilterN``)
  queue the jobs of the objects stored from then on, and every job runs
  the line as it reads when the job runs, one queued before too, as long
  as the numbers of the lines stay: a line added or emptied (or
  ``ExportConverters`` changed so) would need a lane of its own, or leave
  the jobs queued for a line without it, so the export lines in use then
  all stay until the next start;
- the query/retrieve and compression lines (``QueryConverter0`` ...,
  ``CompressionConverterN``) take effect at the next start.
"""

from pacscore.converters.rules import ruleKind


def isConverterKey(key):
    """Whether a change of ``key`` may change the converter lines."""
    return "converter" in key.lower() or ruleKind(key) is not None


def _numbers(rules):
    return [rule.number for rule in rules]


def use(archive, rules, keys):
    """Give ``archive`` the lines of ``rules`` (a ``ConverterRules``) that
    the changes of ``keys`` may take at once (see the module docstring);
    the converter keys of ``keys`` that wait for the next start."""
    keys = [key for key in keys if isConverterKey(key)]
    if not keys:
        return []
    exports = _numbers(rules.exportRules) == _numbers(archive.converterRules.exportRules)
    archive.useConverterRules(rules, exports)
    live = ("import", "export") if exports else ("import",)
    return [key for key in keys if ruleKind(key) not in live]
