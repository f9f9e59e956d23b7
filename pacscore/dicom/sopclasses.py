"""Which SOP classes from dgatesop.lst are storage classes.

pynetdicom knows the standard ones; a UID that neither it nor pydicom
knows (GE, Philips and other private objects in Conquest's list) is taken
as storage, as Conquest does.
"""

from pydicom.uid import UID
from pynetdicom.service_class import ServiceClass, StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

VERIFICATION = "1.2.840.10008.1.1"


def isStorageClass(uid):
    """True for a SOP class that C-STORE stores."""
    service = uid_to_service_class(uid)
    if service is StorageServiceClass:
        return True
    return service is ServiceClass and UID(uid).name == uid
