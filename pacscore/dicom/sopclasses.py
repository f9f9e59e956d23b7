"""Which SOP classes from dgatesop.lst are storage classes, and which of
them are video ones.

pynetdicom knows the current standard ones.  A retired storage class
(Ultrasound Image Storage 1.2.840.10008.5.1.4.1.1.6, Standalone Curve,
Stored Print, ...) it leaves to no service, so pydicom's name of it, which
says Storage, decides; a UID that neither knows (GE, Philips and other
private objects in Conquest's list) is taken as storage, as Conquest does.
"""

import re

from pydicom.uid import UID
from pynetdicom.service_class import ServiceClass, StorageServiceClass
from pynetdicom.sop_class import (
    VideoEndoscopicImageStorage, VideoMicroscopicImageStorage, VideoPhotographicImageStorage,
    uid_to_service_class)

VERIFICATION = "1.2.840.10008.1.1"
# The storage classes the MPEG-2, MPEG-4 and HEVC transfer syntaxes are
# defined for (PS3.5 8.2.5 - 8.2.8).
VIDEO_STORAGE_CLASSES = frozenset(
    {VideoEndoscopicImageStorage, VideoMicroscopicImageStorage, VideoPhotographicImageStorage})
_STORAGE_NAME = re.compile(r"\bStorage\b(?! Commitment)")  # not the retired Storage Commitment Pull Model


def isStorageClass(uid):
    """True for a SOP class that C-STORE stores."""
    service = uid_to_service_class(uid)
    if service is StorageServiceClass:
        return True
    if service is not ServiceClass:
        return False
    known = UID(uid)
    return known.name == uid or (known.type == "SOP Class" and _STORAGE_NAME.search(known.name) is not None)
