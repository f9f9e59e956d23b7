"""Makes the ``stamp`` command of pacs_stamp a pacs plugin."""

from pacs_stamp import StampCommand

stamp = StampCommand()
