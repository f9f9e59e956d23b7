"""DICOMweb (PS3.18) at ``/dicom-web`` of the web service, as Orthanc and
dcm4chee serve it to viewers (OHIF, Weasis) and scripts: QIDO-RS searches
(``search``), WADO-RS retrieval (``retrieve``) and STOW-RS storage
(``store``), routed by ``resource``."""
