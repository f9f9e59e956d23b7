"""The web interface: Conquest's CGI pages (``/cgi-bin/dgate?mode=...``)
and WADO-URI, served by twisted.web on the archive's reactor."""
