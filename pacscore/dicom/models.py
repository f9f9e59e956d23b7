"""The query/retrieve information models (PS3.4 C.6) and their SOP classes.

Patient Root, Study Root and the retired Patient/Study Only model, each with
a FIND, MOVE and GET SOP class, plus Conquest's private NKI retrieve
classes (a C-MOVE that may carry NKI compression; served as the plain one).
"""

from typing import NamedTuple

FIND, MOVE, GET = "FIND", "MOVE", "GET"

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_STUDY_ONLY_FIND = "1.2.840.10008.5.1.4.1.2.3.1"
PATIENT_STUDY_ONLY_MOVE = "1.2.840.10008.5.1.4.1.2.3.2"
PATIENT_STUDY_ONLY_GET = "1.2.840.10008.5.1.4.1.2.3.3"
NKI_PREFIX = "1.2.826.0.1.3680043.2.135.1066"

ALL_LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


class Model(NamedTuple):
    """One SOP class of a query/retrieve model."""

    name: str
    operation: str       # FIND, MOVE or GET
    levels: tuple        # the Query/Retrieve Levels it allows, top down


_PATIENT_ROOT = ("Patient Root", ALL_LEVELS)
_STUDY_ROOT = ("Study Root", ALL_LEVELS[1:])
_PATIENT_STUDY_ONLY = ("Patient/Study Only", ALL_LEVELS[:2])

def _models():
    models = {}
    for (name, levels), uids in (
            (_PATIENT_ROOT, (PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET)),
            (_STUDY_ROOT, (STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET)),
            (_PATIENT_STUDY_ONLY, (PATIENT_STUDY_ONLY_FIND, PATIENT_STUDY_ONLY_MOVE, PATIENT_STUDY_ONLY_GET))):
        for operation, uid in zip((FIND, MOVE, GET), uids):
            models[uid] = Model(name, operation, levels)
        models[NKI_PREFIX + uids[1][len("1.2.840.10008"):]] = Model(name + " (NKI)", MOVE, levels)
    return models


MODELS = _models()

def modelOf(sopClassUID):
    """The ``Model`` of a query/retrieve SOP class, or None."""
    return MODELS.get(sopClassUID)


def sopClassesFor(operation):
    """The SOP class UIDs of every model serving ``operation`` (FIND, MOVE or GET)."""
    return [uid for uid, model in MODELS.items() if model.operation == operation]
