"""What the ``dgate`` client needs of the configuration before sending a
command, without the modules that load all of it (pacscore.config.loader):
the name of dicom.ini, the DICOM port it defaults to, and the packaged
etc/ folder with the default dicom.ini."""

import site
import sys
from pathlib import Path

import pacscore
from pacscore.config.errors import ConfigError

INI_NAME = "dicom.ini"
DEFAULT_TCP_PORT = 5678


def defaultConfigDir():
    """The packaged etc/ folder holding the default dicom.ini.

    Looked for next to the ``pacscore`` package (a source checkout or an
    editable install), then where setup.cfg's data_files put it: under
    ``share/pacs/etc`` of ``sys.prefix`` (a wheel installed in a venv or the
    system), of the folder holding the package (``pip install --target``)
    and of the user base (``pip install --user``).
    """
    packageParent = Path(pacscore.__file__).resolve().parent.parent
    shared = Path("share", "pacs", "etc")
    candidates = [packageParent / "etc", Path(sys.prefix) / shared,
                  packageParent / shared, Path(site.getuserbase()) / shared]
    for folder in candidates:
        if (folder / INI_NAME).is_file():
            return str(folder)
    raise ConfigError(candidates[0] / INI_NAME, None,
                      "no packaged default configuration found (also looked in "
                      f"{', '.join(str(c) for c in candidates[1:])})")
