"""Readers (and writers, for live edits) of Conquest's configuration files:
dicom.ini, acrnema.map, dgatesop.lst and dicom.sql."""
