"""The body of a STOW-RS request, written as the connection takes it.

A ``multipart/related; type="application/dicom"`` body of Part-10 objects,
each given as its file meta and its data set: bytes, or a ``StoredData``
(a large object sent as stored) read a piece at a time in the I/O pool.
So a request costs the objects it converted in memory, not a copy of the
whole body, and a large object a few hundred kB.
"""

from twisted.internet import defer
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from pacscore.dicom.storeddata import StoredData, closeIfStored
from pacscore.web.dicomweb import multipart
from pacscore.pacing import Pacer

PIECE_BYTES = 256 << 10


@implementer(IBodyProducer)
class PartsBody(Pacer):
    """The multipart body of ``objects``, ``[(file meta bytes, data set)]``,
    between ``boundary`` lines.  The files of its ``StoredData`` are closed
    once written, or by ``close()`` when the request never starts."""

    def __init__(self, boundary, objects):
        super().__init__()
        self.segments = []
        for meta, data in objects:
            self.segments += [multipart.partHeader(boundary, "application/dicom") + meta, data, multipart.CRLF]
        self.segments.append(multipart.closing(boundary))
        self.length = sum(len(segment) for segment in self.segments)

    def startProducing(self, consumer):
        # once stopProducing was called the Deferred must never fire (IBodyProducer)
        return defer.ensureDeferred(self._produce(consumer)).addCallback(
            lambda _: defer.Deferred() if self.stopped else None)

    async def _produce(self, consumer):
        try:
            for segment in self.segments:
                for position in range(0, len(segment), PIECE_BYTES):
                    size = min(PIECE_BYTES, len(segment) - position)
                    if isinstance(segment, StoredData):
                        piece = await segment.read(position, size)
                    else:
                        piece = bytes(memoryview(segment)[position:position + size])
                    await self.resumed()
                    if self.stopped:
                        return
                    consumer.write(piece)
        finally:
            self.close()

    def close(self):
        """Close the files of the ``StoredData`` parts."""
        for segment in self.segments:
            closeIfStored(segment)
