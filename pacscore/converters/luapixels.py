"""Conquest's pixel functions for Lua scripts: ``getpixel``, ``setpixel``,
``getrow``, ``setrow``, ``getcolumn``, ``setcolumn``, ``getimage`` and
``setimage`` (and the methods ``x:GetPixel`` ...), on native (not
compressed) pixel data, as Conquest's lua interface reads their arguments:

- ``getpixel(x, y[, z])``: the samples of pixel (x, y) of frame z (from
  0), one value per sample (three for RGB); ``setpixel(x, y, z, v ...)``
  sets them;
- ``getrow(y[, z])`` and ``getcolumn(x[, z])``: a table of the row's or
  column's samples from index 0; ``setrow(y[, z], t)`` and
  ``setcolumn(x[, z], t)`` set them from such a table;
- ``getimage([z])``: the frame's bytes as a string; ``setimage([z,] s)``
  replaces them with a string of the same length.

Samples of 1 and 2 bytes are unsigned, of 4 bytes signed, as in Conquest,
in the byte order of the object (big endian where it was read or received
so).  A setter writes into the pixel data where it lies (made a
``bytearray`` by the first), so that a loop over an image copies nothing.
Where there is nothing to address (no rows, columns or pixel data,
compressed pixel data, planar configuration not 0 or 1, a pixel outside
the image) a getter gives nothing and a setter changes nothing.
"""

from typing import NamedTuple

from pydicom.uid import ExplicitVRBigEndian

_SIGNED = {1: False, 2: False, 4: True}  # sample size in bytes: signed, as Conquest reads them
_MODES = {"getpixel": "pixel", "setpixel": "pixel", "getrow": "row", "setrow": "row",
          "getcolumn": "column", "setcolumn": "column", "getimage": "image", "setimage": "image"}


class Layout(NamedTuple):
    """How the samples of native pixel data lie: ``size`` bytes each in
    ``order`` ("little" or "big"), ``samples`` per pixel, interleaved,
    frame after frame."""

    samples: int
    rows: int
    columns: int
    size: int
    frames: int
    order: str

    @property
    def frameSamples(self):
        return self.rows * self.columns * self.samples


def layoutOf(dataset, pixels):
    """The Layout of ``pixels`` (the Pixel Data element of ``dataset``), or
    None when there is nothing to address."""
    rows, columns = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
    size = (int(dataset.get("BitsAllocated") or 0) + 7) // 8
    if pixels is None or pixels.is_undefined_length or not isinstance(pixels.value, (bytes, bytearray)) or not rows \
            or not columns or size not in _SIGNED or int(dataset.get("PlanarConfiguration") or 0) > 1:
        return None
    samples = int(dataset.get("SamplesPerPixel") or 1)
    frames = len(pixels.value) // (rows * columns * samples * size)
    syntax = getattr(dataset, "file_meta", {}).get("TransferSyntaxUID")  # what it is written in (saving)
    big = syntax == ExplicitVRBigEndian if syntax else dataset.original_encoding[1] is False
    order = "big" if big else "little"
    return Layout(samples, rows, columns, size, frames, order)


def _integer(value):
    """Lua's integer of a value (0 for no number), as lua_tointeger."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _coordinates(mode, args, setting):
    """``(x, y, z, rest)`` of the arguments: the coordinates the mode takes,
    then z when given (for a setter of a row, column or image only when
    the data still follows it), then the rest."""
    args = list(args)
    x = _integer(args.pop(0)) if mode in ("pixel", "column") and args else 0
    y = _integer(args.pop(0)) if mode in ("pixel", "row") and args else 0
    takesZ = len(args) > 1 if setting and mode != "pixel" else bool(args)
    z = _integer(args.pop(0)) if takesZ else 0
    return x, y, z, args


def _positions(mode, layout, x, y, z):
    """The sample index of each pixel addressed, or None when outside."""
    if not (0 <= x < layout.columns and 0 <= y < layout.rows and 0 <= z < layout.frames):
        return None
    first = z * layout.frameSamples
    if mode == "pixel":
        pixels = [y * layout.columns + x]
    elif mode == "row":
        pixels = [y * layout.columns + column for column in range(layout.columns)]
    elif mode == "column":
        pixels = [row * layout.columns + x for row in range(layout.rows)]
    else:
        pixels = range(layout.rows * layout.columns)
    return [first + pixel * layout.samples for pixel in pixels]


def _read(data, layout, index):
    start = index * layout.size
    return int.from_bytes(data[start:start + layout.size], layout.order, signed=_SIGNED[layout.size])


def _write(data, layout, index, value):
    start = index * layout.size
    bits = 8 * layout.size
    value &= (1 << bits) - 1
    data[start:start + layout.size] = value.to_bytes(layout.size, layout.order)


def pixelCall(name, dataset, pixels, args, table):
    """Run the pixel function ``name`` with the Lua ``args`` on ``dataset``
    whose Pixel Data element is ``pixels``: ``(values returned, None when
    nothing was written, else how many bytes were copied to write in
    place)``; ``table(dict)`` makes a Lua table, and a setter's data is a
    Lua table (indexed from 0) or, for setimage, bytes."""
    mode, setting = _MODES[name], name.startswith("set")
    layout = layoutOf(dataset, pixels)
    if layout is None:
        return (), None
    x, y, z, rest = _coordinates(mode, args, setting)
    positions = _positions(mode, layout, x, y, z)
    if positions is None:
        return (), None
    data = pixels.value
    if mode == "image":
        start, length = positions[0] * layout.size, layout.frameSamples * layout.size
        if not setting:
            return (data[start:start + length],), None
        if not rest or not isinstance(rest[-1], bytes) or len(rest[-1]) != length:
            return (), None
        copied = _writable(pixels)
        pixels.value[start:start + length] = rest[-1]
        return (), copied
    if not setting:
        values = [_read(data, layout, position + sample) for position in positions
                  for sample in range(layout.samples)]
        if mode == "pixel":
            return tuple(values), None
        return (table(dict(enumerate(values))),), None
    if mode == "pixel":
        values = [_integer(value) for value in rest[:layout.samples]]
    elif rest and not isinstance(rest[-1], (int, float, str, bytes)):  # a Lua table
        given = rest[-1]
        values = [_integer(given[index]) for index in range(len(positions) * layout.samples)]
    else:
        return (), None
    copied = _writable(pixels)
    for number, value in enumerate(values):
        _write(pixels.value, layout, positions[number // layout.samples] + number % layout.samples, value)
    return (), copied


def _writable(pixels):
    """Make the value of ``pixels`` a bytearray; how many bytes it copied."""
    if isinstance(pixels.value, bytearray):
        return 0
    pixels._value = bytearray(pixels.value)  # pydicom's setter would take a bytearray for a list of values
    return len(pixels.value)
