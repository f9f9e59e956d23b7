"""Random damage to bytes: the tests that prove malformed input meets a
clean refusal (an A-ABORT, a DatasetError), never an internal error, feed
seeded mutations of valid PDUs and data sets."""


def mutated(rng, data, near=None):
    """``data`` with 1 to 4 random changes (a byte replaced, up to 8 bytes
    removed or inserted, or the tail cut off), drawn from ``rng`` (a
    ``random.Random``); with ``near``, changes fall in the first ``near``
    bytes (where the headers are), except the cut."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        position = rng.randrange(min(len(data), near or len(data)) + 1)
        if kind < 0.5 and position < len(data):
            data[position] = rng.randrange(256)
        elif kind < 0.7:
            del data[position:position + rng.randint(1, 8)]
        elif kind < 0.85:
            data[position:position] = rng.randbytes(rng.randint(1, 8))
        else:
            del data[rng.randrange(len(data) + 1):]
    return bytes(data)
