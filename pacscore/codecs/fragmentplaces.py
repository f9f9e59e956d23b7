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
    one a fragment when there are one or ``count`` of them, one for all
    for a single frame, else ended by a JPEG end of image marker.  Frames
    an offset table places are those up to frame ``wanted`` (from 1), as
    many as it counts.  ValueError for fewer fragments than frames."""
    basic = parse_basic_offsets(f)
    first = f.tell()
    if extended:
        offsets = unpack(f"<{len(extended[0]) // 8}Q", extended[0])
        return _placedFrames(_items(f), first, offsets, wanted)
    if basic:
        return _placedFrames(_items(f), first, basic, wanted)
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


def _placedFrames(items, first, offsets, wanted):
    """The frames whose first items are at ``offsets`` (from the item at
    ``first``), to frame ``wanted``, each with the items to the next one."""
    frames = []
    for offset, length in items:
        if len(frames) < len(offsets) and offset - 8 - first == offsets[len(frames)]:
            if len(frames) == wanted:
                break
            frames.append([])
        if frames:
            frames[-1].append((offset, length))
    return frames


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
