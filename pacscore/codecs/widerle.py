"""RLE Lossless of pixel data wider than 16 bits (32 bits allocated, 1 or
3 samples; 64 bits of 1 sample), which pydicom's encoder profile refuses
(8 or 16 bits allocated) though RLE takes up to 15 byte segments a frame
(PS3.5 G.2) and DCMTK's ``dcmcrle`` writes them: each frame encoded by
pylibjpeg-rle, one segment per byte of each sample, most significant
first."""

from rle.utils import encode_pixel_data

from pacscore.codecs.pixelframes import encapsulateFrames
from pacscore.codecs.syntaxes import RLE_LOSSLESS

MOST_SEGMENTS = 15  # PS3.5 G.2


def isWide(ds):
    """Whether the native pixel data of ``ds`` needs this encoder: more
    than 16 bits allocated."""
    return (ds.get("BitsAllocated") or 0) > 16


def encodeDataset(ds):
    """Replace the native Pixel Data of ``ds`` (little endian, colour by
    pixel) by its frames in RLE Lossless, encapsulated with a basic offset
    table, and set ``ds.file_meta.TransferSyntaxUID``, as pydicom's
    ``Dataset.compress`` does.  ValueError for an image RLE cannot take
    (more than 15 segments) or whose Pixel Data is shorter than its frames."""
    rows, columns, samples, bits = ds.Rows, ds.Columns, ds.get("SamplesPerPixel") or 1, ds.BitsAllocated
    if bits % 8 or bits // 8 * samples > MOST_SEGMENTS:
        raise ValueError(f"RLE Lossless takes at most {MOST_SEGMENTS} segments, not {bits // 8} x {samples} "
                         f"of {bits} bits allocated x {samples} samples")
    frames = int(ds.get("NumberOfFrames") or 1)
    size = rows * columns * samples * bits // 8
    data = ds.PixelData
    if len(data) < frames * size:
        raise ValueError(f"Pixel Data has {len(data)} bytes, not the {frames * size} of {frames} frame(s)")
    encapsulateFrames(ds, (encode_pixel_data(data[i * size:(i + 1) * size], rows=rows, columns=columns,
                                             samples_per_pixel=samples, bits_allocated=bits, byteorder="<")
                           for i in range(frames)), RLE_LOSSLESS)
