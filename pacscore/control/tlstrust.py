"""Whom dgate trusts on a control port served over ``ssl:``: the server's
own certificate, read from the server's description in the working
folder's dicom.ini (``certKey``, else ``privateKey``, Twisted's default
``server.pem``, when one file holds both), with the certificates of
``extraCertChain``; relative paths are relative to the working folder.

Such a certificate often comes from a private authority, or signs itself,
which the platform does not trust: dgate trusts that certificate itself
(OpenSSL's partial chains), its host names still checked against the
address it connects to.  When it cannot read one (a key file only the
server may read), the platform's authorities decide, as for any TLS client.
"""

import os

from OpenSSL import crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from pacscore.tls import certificateFiles, certificatesIn


def serverCertificates(keywords, folder):
    """The certificates (``ssl.Certificate``) in the files that the ssl:
    description's ``keywords`` (lower-case names) name, relative to
    ``folder``; those that cannot be read are left out."""
    certificates = []
    for name in certificateFiles(keywords):
        try:
            certificates.extend(ssl.Certificate(c) for c in certificatesIn(os.path.join(folder, name), "certKey"))
        except ValueError:
            continue
    return certificates


def connectionCreator(host, certificates):
    """The TLS connection creator of dgate for the server at ``host``
    showing one of ``certificates`` (the platform's authorities when none)."""
    if not certificates:
        return ssl.optionsForClientTLS(host)
    return _PartialChains(ssl.optionsForClientTLS(host, trustRoot=ssl.trustRootFromCertificates(certificates)))


@implementer(IOpenSSLClientConnectionCreator)
class _PartialChains:
    """A creator whose trusted certificates are trusted themselves, not only
    as the authorities of others: a server certificate from a private
    authority verifies without that authority."""

    def __init__(self, creator):
        self._creator = creator

    def clientConnectionForTLS(self, tlsProtocol):
        connection = self._creator.clientConnectionForTLS(tlsProtocol)
        connection.get_context().get_cert_store().set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
        return connection
