"""Twisted dropin: the ``mtls:`` server endpoint (``pacscore.tls``).

Found by ``endpoints.serverFromString``, so every endpoint option and key of
``twistd pacs`` accepts it.
"""

from pacscore.tls import MutualTLSServerParser

mutualTLS = MutualTLSServerParser()
