"""Conquest's compression codes s0 ... s9 (manual 7.7: "s0 = Run
CompressionConverter0"): the converter line ``CompressionConverterN`` runs
on an object stored with code sN (IncomingCompression,
DroppedFileCompression, the ``~s0`` of a called AE title, a converter's
``compression s1``) or sent with it (the node's acrnema.map code,
``forward compressed as s2``), as ``RetrieveResultConverter0`` runs
(``hooks.DatasetHook.applyToObject``: on the attributes, what it set or
deleted then applied to the whole object, NKI pixel data decompressed
first). The object's transfer syntax stays as it is. ``destroy`` skips
storing (Success, as an import converter's) or sending it; ``reject``
refuses to store it or leaves it out of a C-MOVE/C-GET.
"""

from pacscore.codecs.nkipixels import withPlainPixels
from pacscore.codecs.syntaxes import codeOf
from pacscore.converters.context import Outcome
from pacscore.converters.hooks import LEFT_OUT
from pacscore.storage.store import Destroyed, Refused


class CompressionScripts:
    """The CompressionConverterN lines (``hooks.hooksFrom``) by code."""

    def __init__(self, hooks):
        self.byCode = {f"s{n}": hooks[f"CompressionConverter{n}"] for n in range(10)
                       if f"CompressionConverter{n}" in hooks}

    def runs(self, code):
        """Whether ``code`` runs a converter line here."""
        return codeOf(code) in self.byCode

    def _run(self, data, syntax, code, callingAE, calledAE):
        hook = self.byCode.get(codeOf(code))
        if hook is None:
            return None, Outcome.CONTINUE, data
        outcome, data = hook.applyToObject(withPlainPixels(data, syntax), syntax, callingAE, calledAE)
        return hook, outcome, data

    def apply(self, data, syntax, code, callingAE, calledAE):
        """In a worker thread: ``(kept, data)`` of the data set ``data`` in
        ``syntax`` after the line of ``code`` (``kept`` False: it said
        destroy or reject); unchanged when no line runs for ``code``.
        IdentifierError for a data set that cannot be decoded."""
        _, outcome, data = self._run(data, syntax, code, callingAE, calledAE)
        return outcome not in LEFT_OUT, data

    def applyToIncoming(self, incoming, data, syntax, code):
        """``apply`` for an object being stored; Destroyed or Refused when
        the line says so."""
        hook, outcome, data = self._run(data, syntax, code, incoming.callingAE, incoming.calledAE)
        if outcome is Outcome.DESTROY:
            raise Destroyed(f"destroyed by {hook.script.key} (compression {codeOf(code)})")
        if outcome is Outcome.REJECT:
            raise Refused(f"rejected by {hook.script.key} (compression {codeOf(code)})")
        return data
