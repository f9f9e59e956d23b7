"""Peers held off after a failure (``FailHoldOff``): for so many seconds
they are not tried again, so that work for them waits, or goes without
them, instead of waiting on a peer that just failed.  The export queue
holds its destinations off, the virtual servers their archives."""


class HoldOff:
    """The peers (any hashable key) held off, each until ``seconds`` after
    its last failure by ``clock`` (an IReactorTime)."""

    def __init__(self, clock, seconds):
        self.clock = clock
        self.seconds = seconds
        self._until = {}

    def hold(self, key):
        """``key`` failed: held off for ``seconds`` from now."""
        self._until[key] = self.clock.seconds() + self.seconds

    def remaining(self, key):
        """The seconds ``key`` is still held off (0: it is not)."""
        return max(self._until.get(key, 0) - self.clock.seconds(), 0)

    def held(self):
        """The keys held off now."""
        now = self.clock.seconds()
        return {key for key, until in self._until.items() if until > now}

    def release(self, key=None):
        """``key`` (None: every peer) no longer held off."""
        if key is None:
            self._until.clear()
        else:
            self._until.pop(key, None)
