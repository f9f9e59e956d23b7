"""The server's local time zone set for one test."""

import os
from time import tzset


def inZone(testCase, zone):
    """The local time of the rest of ``testCase`` that of ``zone`` (TZ)."""
    before = os.environ.get("TZ")

    def restore():
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        tzset()

    os.environ["TZ"] = zone
    tzset()
    testCase.addCleanup(restore)
