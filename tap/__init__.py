"""Service makers for twistd: tap.pacs builds the ``twistd pacs`` service."""
