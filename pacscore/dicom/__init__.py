"""DICOM networking: the PS3.8 upper layer as a Twisted protocol, DIMSE
command sets, association negotiation and the SCP services."""
