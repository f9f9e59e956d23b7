"""pacs: a DICOM archive on Twisted. The library; tap/ wires it into services."""
