"""Generate synthetic DICOM corpora: patients, studies, series and images
with real pixel data, written as Part-10 files (CT Image Storage, Explicit
VR Little Endian) — for the interop tests and the ingest benchmark."""

import os
from dataclasses import dataclass

import numpy
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PREFIX = "1.2.826.0.1.3680043.8.498."


@dataclass(frozen=True)
class CorpusImage:
    path: str
    patientID: str
    studyUID: str
    seriesUID: str
    sopUID: str


def makeDataset(patientID, patientName, studyUID, seriesUID, sopUID, seriesNumber, instanceNumber,
                rows=64, columns=64, modality="CT", studyDate="20240102", charset=None, seed=0):
    """One CT image as a pydicom Dataset with file meta."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sopUID
    ds.StudyDate = studyDate
    ds.SeriesDate = studyDate
    ds.StudyTime = "101500"
    ds.AccessionNumber = f"A{abs(hash(studyUID)) % 10**8:08d}"
    ds.Modality = modality
    ds.Manufacturer = "pacs-tests"
    ds.StudyDescription = "Synthetic study"
    ds.SeriesDescription = f"Series {seriesNumber}"
    ds.PatientName = patientName
    ds.PatientID = patientID
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = studyUID
    ds.SeriesInstanceUID = seriesUID
    ds.StudyID = "1"
    ds.SeriesNumber = seriesNumber
    ds.InstanceNumber = instanceNumber
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SliceLocation = str(float(instanceNumber))
    rng = numpy.random.default_rng(seed)
    ds.PixelData = rng.integers(0, 4096, size=(rows, columns), dtype=numpy.uint16).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sopUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def generateCorpus(folder, patients=3, studiesPerPatient=2, seriesPerStudy=2, imagesPerSeries=5,
                   rows=64, columns=64, namePrefix="Test"):
    """Write a corpus under ``folder``; returns the list of CorpusImage."""
    os.makedirs(folder, exist_ok=True)
    images = []
    counter = 0
    for p in range(patients):
        patientID = f"PAT{p:04d}"
        for s in range(studiesPerPatient):
            studyUID = generate_uid(PREFIX)
            for r in range(seriesPerStudy):
                seriesUID = generate_uid(PREFIX)
                for i in range(imagesPerSeries):
                    sopUID = generate_uid(PREFIX)
                    counter += 1
                    ds = makeDataset(patientID, f"{namePrefix}^Patient{p}", studyUID, seriesUID, sopUID,
                                     r + 1, i + 1, rows, columns, seed=counter)
                    path = os.path.join(folder, f"img{counter:06d}.dcm")
                    ds.save_as(path, enforce_file_format=True)
                    images.append(CorpusImage(path, patientID, studyUID, seriesUID, sopUID))
    return images
