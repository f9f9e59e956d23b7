"""Operating the archive: the ``dgate`` command line (and, later, the control port)."""
