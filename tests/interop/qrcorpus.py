"""The query/retrieve test corpus and its ground truth.

Five patients (one named in Latin-1, one in UTF-8, one with a quote and SQL
wildcard characters in the name), seven studies over several dates, times
and modalities, a few images per series.  UIDs derive from fixed names, so
the truth is the same in every run.
"""

import os
from dataclasses import dataclass, field

from pydicom.uid import generate_uid

from pacscore.testing.corpus import makeDataset


@dataclass
class Series:
    uid: str
    studyUID: str
    modality: str
    sopUIDs: list


@dataclass
class Study:
    uid: str
    accession: str
    date: str
    time: str
    series: list = field(default_factory=list)


@dataclass
class Patient:
    id: str
    name: str
    charset: str | None
    birthDate: str
    sex: str
    studies: list = field(default_factory=list)


# patient id, name, charset, birth date, sex, [(accession, date, time, [(modality, images)])]
_LAYOUT = [
    ("PAT0001", "Doe^John", None, "19600101", "M",
     [("ACC0001", "20230105", "081500", [("CT", 3), ("CT", 2)]),
      ("ACC0002", "20240210", "121500", [("MR", 2)])]),
    ("PAT0002", "Doe^Jane", None, "19650202", "F",
     [("ACC0003", "20240211", "143000", [("CT", 2), ("MR", 1)])]),
    ("PAT0003", "Müller^Jürgen", "ISO_IR 100", "19700303", "M",
     [("ACC0004", "20220601", "093000", [("CT", 2)])]),
    ("PAT0004", "山田^太郎", "ISO_IR 192", "19800404", "M",
     [("ACC0005", "20250101", "235959", [("US", 1)])]),
    ("PAT0005", "O'Brien^Pat%_", None, "19900505", "O",
     [("ACC'0006", "20240212", "000000", [("CT", 1)])]),
]


def _uid(*names):
    return generate_uid("1.2.826.0.1.3680043.8.498.", entropy_srcs=["pacs-qr-corpus", *names])


class Corpus:
    """The patients, studies, series and images, with look-ups for tests."""

    def __init__(self):
        self.patients = []
        self.series = []
        for patientID, name, charset, birthDate, sex, studies in _LAYOUT:
            patient = Patient(patientID, name, charset, birthDate, sex)
            for accession, date, time, seriesList in studies:
                study = Study(_uid(accession), accession, date, time)
                for number, (modality, images) in enumerate(seriesList, 1):
                    seriesUID = _uid(accession, str(number))
                    series = Series(seriesUID, study.uid, modality,
                                    [_uid(accession, str(number), str(i)) for i in range(1, images + 1)])
                    study.series.append(series)
                    self.series.append(series)
                patient.studies.append(study)
            self.patients.append(patient)

    def patient(self, patientID):
        return next(p for p in self.patients if p.id == patientID)

    def study(self, accession):
        return next(s for p in self.patients for s in p.studies if s.accession == accession)

    def patientIDs(self):
        return [p.id for p in self.patients]

    def studyUIDs(self):
        return [s.uid for p in self.patients for s in p.studies]

    def seriesUIDs(self):
        return [s.uid for s in self.series]

    def sopUIDs(self, patientID=None, modality=None):
        return [uid for p in self.patients if patientID in (None, p.id)
                for study in p.studies for s in study.series if modality in (None, s.modality)
                for uid in s.sopUIDs]

    def datasets(self):
        """``(SOPInstanceUID, pydicom Dataset)`` of every image."""
        for patient in self.patients:
            for study in patient.studies:
                for number, series in enumerate(study.series, 1):
                    for instance, sopUID in enumerate(series.sopUIDs, 1):
                        ds = makeDataset(patient.id, patient.name, study.uid, series.uid, sopUID, number,
                                         instance, rows=16, columns=16, modality=series.modality,
                                         studyDate=study.date, charset=patient.charset, seed=instance)
                        ds.StudyTime = study.time
                        ds.AccessionNumber = study.accession
                        ds.PatientBirthDate = patient.birthDate
                        ds.PatientSex = patient.sex
                        yield sopUID, ds


CORPUS = Corpus()


def writeCorpus(folder):
    """Write the corpus as Part-10 files; ``{SOPInstanceUID: path}``."""
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for sopUID, ds in CORPUS.datasets():
        path = paths[sopUID] = os.path.join(folder, f"{sopUID}.dcm")
        ds.save_as(path, enforce_file_format=True)
    return paths


def storeCorpus(server, folder):
    """Write the corpus and C-STORE it into ``server``; ``{SOPInstanceUID: path}``."""
    paths = writeCorpus(folder)
    result = server.store(*paths.values())
    if result.returncode != 0:
        raise AssertionError(f"storescu failed:\n{result.stdout}\n{result.stderr}")
    return paths
