"""The web interface: Conquest's CGI pages (``/cgi-bin/dgate?mode=...``)
and WADO-URI, served by twisted.web on the archive's reactor."""

DEFAULT_WEB_ENDPOINT = "tcp:8080:interface=127.0.0.1"
DEFAULT_WEB_PORT = 8080
