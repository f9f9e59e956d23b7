"""Where the frames of encapsulated Pixel Data are in a file, found once
for all the frames an answer sends: reading a frame with pydicom's
``get_frame`` starts again at the Basic Offset Table, which made sending
every frame cost the square of their number.  Frames are split as
pydicom's ``generate_frames`` splits them, reading the item headers and,
where frames span several fragments without an offset table, the last
bytes of each fragment, never a whole fragment."""

from struct import unpack

from pydicom.encaps import parse_basic_offsets

_ITEM = (0xFFFE, 0xE000)
_EOI = b"\xff\xd9"


def framePlaces(f, count, extended, wanted):
    """``[[(offset, length) of each of its fragments' values in the file]]``
    of each frame of the encapsulated Pixel Data whose Basic Offset Table
    item is where ``f`` is, of an object of ``count`` frames, with the
    ``extended`` Extended Offset Table and its lengths (None without):
    those an offset table places, up to frame ``wanted`` (from 1), as
    many as it counts, when it agrees with the item headers
    (``_placedFrames``); else one a fragment when there are one or
    ``count`` of them, one for all for a single frame, else ended by a
    JPEG end of image marker.  ValueError for fewer fragments than frames."""
    basic = parse_basic_offsets(f)
    first = f.tell()
    placed = None
    if extended:
        offsets, lengths = (unpack(f"<{len(table) // 8}Q", table) for table in extended)
        if len(offsets) == len(lengths) == count:
            placed = _placedFrames(_items(f), first, offsets, lengths, wanted)
    elif basic:
        placed = _placedFrames(_items(f), first, basic, None, wanted)
    if placed is not None:
        return placed
    f.seek(first)
    return _splitFrames(f, list(_items(f)), count)


def _items(f):
    """``(offset, length)`` of the value of each item from where ``f`` is,
    their headers read, to the sequence delimiter, another tag or the
    end of the file."""
    while True:
        header = f.read(8)
        if len(header) < 8 or unpack("<HH", header[:4]) != _ITEM:
            return
        length = unpack("<L", header[4:])[0]
        yield f.tell(), length
        f.seek(length, 1)


def _placedFrames(items, first, offsets, lengths, wanted):
    """The frames whose first items are at ``offsets`` (from the item at
    ``first``), to frame ``wanted``, each with the items to the next one;
    with the Extended Offset Table's ``lengths`` one item each of that
    length.  None when the table disagrees with the items (the first not
    at 0, offsets not ascending, one not at an item, a length not the
    item's, a frame past the last item), as a table left wrong by an
    editor would have frames sent with bytes of other items."""
    if offsets[0] != 0 or any(later <= earlier for earlier, later in zip(offsets, offsets[1:])):
        return None
    frames = []
    for offset, length in items:
        start = offset - 8 - first
        if len(frames) < len(offsets) and start == offsets[len(frames)]:
            if len(frames) == wanted:
                break
            frames.append([])
        elif len(frames) < len(offsets) and start > offsets[len(frames)] or lengths is not None:
            return None
        if lengths is not None and length != lengths[len(frames) - 1]:
            return None
        frames[-1].append((offset, length))
    return frames if len(frames) == min(wanted, len(offsets)) else None


def _splitFrames(f, items, count):
    """The frames of ``items`` without an offset table, split as
    ``generate_fragmented_frames`` splits them."""
    if len(items) == 1 or len(items) == count:
        return [[item] for item in items]
    if count == 1:
        return [items]
    if len(items) < count:
        raise ValueError("its Pixel Data holds fewer fragments than frames, without an offset table")
    frames, frame = [], []
    for offset, length in items:
        frame.append((offset, length))
        tail = min(length, 10)
        f.seek(offset + length - tail)
        if _EOI in f.read(tail):
            frames.append(frame)
            frame = []
    return frames + [frame] if frame else frames
