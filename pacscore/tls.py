"""TLS that authenticates both ends: the ``mtls:`` server endpoint, and
``ClientTLS``, how pacs connects to the nodes of dicom.ini's
``[DICOMTLSNodes]`` (``AE = caCerts=servers.pem[:privateKey=client.key]
[:certKey=client.pem][:hostname=pacs.example]``).

Twisted's ``ssl:`` server endpoint encrypts and proves the server's identity
but lets any client in.  DICOM's secure transport profiles (PS3.15 annex B,
BCP 195) authenticate the client too, so pacs adds a strports parser, found
through the dropin ``twisted/plugins/pacs_endpoints.py`` by every endpoint
option and key (``--dicom``, ``DICOMTLSEndpoint``, ``HL7Endpoint`` ...)::

    mtls:2762:privateKey=server.key:certKey=server.pem:caCerts=clients.pem
         [:extraCertChain=chain.pem][:interface=0.0.0.0][:backlog=50]

The handshake fails for a client that shows no certificate, or one that no
certificate in ``caCerts`` (PEM, one or more) signed; TLS 1.2 is the oldest
version spoken.  ``certKey`` defaults to ``privateKey`` (both in one PEM
file), as with ``ssl:``.  Files are read, and the key checked against the
certificate, when the endpoint is parsed: a mistake stops start-up.
Private keys are read by ``privateKeyIn``, which asks for no pass phrase:
an encrypted key is refused, saying so (OpenSSL, asked for none, prompted
on the server's terminal and waited, holding start-up or a ``read_ini``
for good); ``checkSSLKey`` refuses one that Twisted's ``ssl:`` parser
would load so.
``certificatesIn`` reads the PEM certificates of a file (``certificateFiles``
those an ``ssl:`` or ``mtls:`` description names), ``validityWarnings`` is
what start-up says of the certificates of a file
out of (or soon out of) their dates; ``tlsFailure`` says whose certificate was refused, and ``warnOfTLSFailure``
logs it for the protocols that serve TLS (DICOM, HL7, web); ``isTLSHandshake`` tells
their plain ports a TLS client.
"""

import datetime
import re
import weakref

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from twisted.internet import endpoints, ssl
from twisted.internet.interfaces import (IHandshakeListener, IOpenSSLClientConnectionCreator, ISSLTransport,
                                         IStreamServerEndpointStringParser)
from twisted.plugin import IPlugin
from zope.interface import implementer

_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")  # PKCS#8, encrypted or not, RSA, EC ...
DEFAULT_KEY_FILE = "server.pem"   # Twisted's ssl: default privateKey

INVALID_PURPOSE = 26  # X509_V_ERR_INVALID_PURPOSE
# OpenSSL's X509_V_ERR_* codes a client certificate is refused for, most often
_VERIFY_ERRORS = {
    2: "caCerts has this issuing authority but not the root above it", 9: "certificate is not yet valid", 10: "certificate has expired", 18: "self-signed certificate",
    19: "self-signed certificate in the chain", 20: "unable to get the issuer's certificate",
    21: "unable to verify the first certificate", 23: "certificate revoked",
    INVALID_PURPOSE: "unsupported certificate purpose",
}
# the extended key usages OpenSSL takes for a TLS server's chain (XKU_SSL_SERVER | XKU_SGC): serverAuth,
# Netscape and Microsoft Server Gated Crypto
_SERVER_USAGES = (ExtendedKeyUsageOID.SERVER_AUTH, x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
                  x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"))
# what OpenSSL says of bytes that are no TLS record (a plain DICOM, MLLP, web or control-port peer;
# OpenSSL 3 tells a plain HTTP request, or proxy CONNECT, apart)
_NOT_TLS = ("wrong version number", "http request", "https proxy request")
# TLS alerts a peer sends when it refuses the certificate we showed
_OURS_REFUSED = re.compile(r"\balert (certificate (expired|revoked|unknown)|unknown ca|bad certificate|"
                           r"unsupported certificate)\b")
# how long before a certificate expires start-up warns of it
EXPIRY_NOTICE = datetime.timedelta(days=30)
# SSL.Connection -> why the peer's certificate was refused, while the connection lives
_refusals = weakref.WeakKeyDictionary()
# SSL.Connection of an outgoing association -> the authorities its node's certificate must come from
_authorities = weakref.WeakKeyDictionary()


def _noteRefusal(connection, certificate, errno, depth, ok):
    """A verify callback that keeps the first reason a certificate failed."""
    if not ok and connection not in _refusals:
        _refusals[connection] = _refusal(errno, certificate)
    return ok


def _refusal(errno, certificate):
    return f"{_VERIFY_ERRORS.get(errno, f'verify error {errno}')}: {_subject(certificate)}"


def _outgoingRefusal(connection):
    """Why the certificate chain a node showed on the outgoing ``connection``
    does not verify against its ``caCerts``, or is not for a TLS server
    (the node's certificate or an authority of its chain), or None.  (Twisted's own verify callback on client connections checks
    the host name and keeps no reason, so the chain is checked again once
    the handshake failed; an ``X509Store`` has no purpose to check.)"""
    authorities, chain = _authorities.get(connection), connection.get_peer_cert_chain()
    if authorities is None or not chain:
        return None
    store = crypto.X509Store()
    for authority in authorities:
        store.add_cert(authority)
    try:
        verified = crypto.X509StoreContext(store, chain[0], chain[1:]).get_verified_chain()
    except crypto.X509StoreContextError as e:
        return _refusal(e.errors[0], e.certificate)
    return next(filter(None, map(_purposeRefusal, verified)), None)


def _purposeRefusal(certificate):
    """Why OpenSSL refuses ``certificate`` (an ``X509``: a node's, or one
    of the authorities that issued it) in the chain of a TLS server: its
    extended key usages, when it names some, include none of ``_SERVER_USAGES``
    (OpenSSL's sslserver purpose, ``xku_reject``: anyExtendedKeyUsage alone is
    refused too, for a node and an authority alike); else None."""
    try:
        usages = certificate.to_cryptography().extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if any(usage in _SERVER_USAGES for usage in usages):
        return None
    return _refusal(INVALID_PURPOSE, certificate)


def _subject(certificate):
    return "".join(f"/{name.decode()}={value.decode(errors='replace')}"
                   for name, value in certificate.get_subject().get_components())


class _RefusalNotingOptions(ssl.CertificateOptions):
    """``CertificateOptions`` whose context keeps why a client certificate
    was refused, for ``tlsFailure``."""

    _noting = False

    def getContext(self):
        context = super().getContext()  # made once; pyOpenSSL refuses changes after its first connection
        if not self._noting:
            context.set_verify(context.get_verify_mode(), _noteRefusal)
            self._noting = True
        return context


def _read(path, parameter):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{parameter}={path}: {e.strerror}") from e


TLS_HANDSHAKE = b"\x16\x03"  # how a TLS ClientHello starts: a handshake record, version 3.x


def isTLSHandshake(head):
    """Whether ``head``, the first bytes a peer sent, start a TLS handshake
    (a TLS client on a plain port: a RIS set up for TLS, ``https://`` typed
    for a plain web port); None while too few are in to tell (none, or
    0x16 alone: a ClientHello's first TCP segment may hold one byte)."""
    head = bytes(head[:2])
    if len(head) < len(TLS_HANDSHAKE) and TLS_HANDSHAKE.startswith(head):
        return None
    return head == TLS_HANDSHAKE


class EncryptedKey(ValueError):
    """A private key file pacs cannot read without a pass phrase."""


def _noPassPhrase(verify):
    """OpenSSL's pass phrase callback: pacs has none to give (OpenSSL's
    own, without one, prompts on the terminal)."""
    raise EncryptedKey()


def privateKeyIn(path, parameter="privateKey"):
    """The ``KeyPair`` of the PEM private key in the file ``path``, read
    without asking for a pass phrase; ValueError names ``parameter`` and
    the file, an EncryptedKey when the key is encrypted."""
    return _keyPair(_read(path, parameter), path, parameter)


def _keyPair(pem, path, parameter):
    """``privateKeyIn`` of the bytes ``pem``, read from ``path``."""
    try:
        return ssl.KeyPair(crypto.load_privatekey(crypto.FILETYPE_PEM, pem, _noPassPhrase))
    except EncryptedKey:
        raise EncryptedKey(f"{parameter}={path}: the private key in {path} is encrypted (pass phrase protected), and "
                           "pacs takes no pass phrase: write it out without one, readable by the server's account "
                           f"alone (openssl pkey -in {path} -out KEYFILE)") from None
    except Exception as e:  # OpenSSL.crypto.Error and friends
        raise ValueError(f"{parameter}={path}: not a readable PEM private key ({e})") from e


def checkSSLKey(positional, keywords):
    """EncryptedKey when the private key Twisted's ``ssl:`` parser would load
    for a description's ``positional`` fields and ``keywords`` (lower-case
    names) is encrypted: the parser would ask the terminal for its pass
    phrase.  Its choice mirrored (``endpoints._parseSSL``): ``privateKey``
    and ``certKey`` may be the fields after the port, ``privateKey``
    defaults to Twisted's default, ``certKey`` to ``privateKey``, and the
    key loaded is the first in certKey's bytes followed by privateKey's
    (a key in the certificate file comes first).  A key unreadable for
    another reason is left for the parser to refuse."""
    named = dict(zip(("port", "privatekey", "certkey"), positional), **keywords)
    privateKey = named.get("privatekey") or DEFAULT_KEY_FILE
    certKey = named.get("certkey") or privateKey
    try:
        certPEM, keyPEM = _read(certKey, "certKey"), _read(privateKey, "privateKey")
    except ValueError:
        return
    inCertKey = _PRIVATE_KEY.search(certPEM) is not None  # the key loaded is the certificate file's
    path = certKey if inCertKey else privateKey
    parameter = "certKey" if inCertKey and named.get("certkey") else "privateKey"
    try:
        _keyPair(certPEM + b"\n" + keyPEM, path, parameter)
    except EncryptedKey as e:
        if not inCertKey:
            raise
        raise EncryptedKey(f"{e}; ssl: reads the key in the certificate file ({certKey}) first, so keep the "
                           f"certificate apart (openssl x509 -in {certKey} -out CERTFILE): "
                           "privateKey=KEYFILE:certKey=CERTFILE") from None
    except ValueError:
        return


def certificateFiles(keywords):
    """The files of the certificates an ``ssl:`` or ``mtls:`` description's
    ``keywords`` (lower-case names) name: ``certKey`` (else ``privateKey``,
    else Twisted's default), then ``extraCertChain`` when given."""
    return [keywords.get("certkey") or keywords.get("privatekey") or DEFAULT_KEY_FILE,
            *([keywords["extracertchain"]] if keywords.get("extracertchain") else [])]


def certificatesIn(path, parameter):
    """The PEM certificates (``X509``) in the file ``path``, at least one;
    ValueError names ``parameter`` and the file when it cannot be read."""
    blocks = _CERTIFICATE.findall(_read(path, parameter))
    if not blocks:
        raise ValueError(f"{parameter}={path}: no PEM certificate in it")
    try:
        return [ssl.Certificate.loadPEM(block).original for block in blocks]
    except Exception as e:  # OpenSSL.crypto.Error and friends
        raise ValueError(f"{parameter}={path}: not a readable certificate ({e})") from e


def _identity(privateKey, certKey):
    """``(KeyPair, X509, PrivateCertificate, chain)`` of the key and
    certificate files, ``chain`` the certificates after the first in the
    certificate file (its issuing authorities, sent with it as DCMTK does);
    ValueError names the file at fault."""
    key = privateKeyIn(privateKey)
    certificate, *chain = certificatesIn(certKey or privateKey, "certKey" if certKey else "privateKey")
    try:
        private = ssl.PrivateCertificate.fromCertificateAndKeyPair(ssl.Certificate(certificate), key)
    except Exception as e:
        raise ValueError(f"privateKey={privateKey} does not belong to certKey={certKey or privateKey} ({e})") from e
    return key, certificate, private, chain


def validityWarnings(path, now=None, certificates=None):
    """What start-up warns of the certificates in the PEM file ``path``
    (a certificate and the chain sent with it; ``certificates``, when
    given, those read from it already): a line for each that, at
    ``now`` (UTC), has expired, is not yet valid or expires within
    ``EXPIRY_NOTICE``, naming the file, which certificate of it (when it
    holds several) and the subject; none for an unreadable file (its
    endpoint says why)."""
    if certificates is None:
        try:
            certificates = certificatesIn(path, "certKey")
        except ValueError:
            return []
    now = now or datetime.datetime.now(datetime.timezone.utc)
    warnings = []
    for number, certificate in enumerate(certificates, 1):
        which = (f"certificate {number} of {len(certificates)} in {path}" if len(certificates) > 1
                 else f"certificate {path}")
        warning = _validity(f"{which} ({_subject(certificate)})", certificate.to_cryptography(), now)
        if warning:
            warnings.append(warning)
    return warnings


def _validity(named, dates, now):
    notBefore, notAfter = dates.not_valid_before_utc, dates.not_valid_after_utc
    if now > notAfter:
        return f"{named} expired on {notAfter:%Y-%m-%d %H:%M} UTC: TLS peers refuse it"
    if now < notBefore:
        return f"{named} is not valid until {notBefore:%Y-%m-%d %H:%M} UTC: TLS peers refuse it until then"
    if notAfter - now < EXPIRY_NOTICE:
        return f"{named} expires on {notAfter:%Y-%m-%d %H:%M} UTC, in {(notAfter - now).days} days"
    return None


def mutualTLSOptions(privateKey, caCerts, certKey=None, extraCertChain=None):
    """``CertificateOptions`` of a server that requires a client certificate
    signed by one of ``caCerts``, sending the certificates after the first
    in ``certKey`` and those of ``extraCertChain`` as its chain; ValueError
    names the file at fault."""
    key, certificate, _, chain = _identity(privateKey, certKey)
    if extraCertChain:
        chain += certificatesIn(extraCertChain, "extraCertChain")
    return _RefusalNotingOptions(
        privateKey=key.original, certificate=certificate, extraCertChain=chain or None,
        verify=True, caCerts=certificatesIn(caCerts, "caCerts"), requireCertificate=True,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2)


class ClientTLS:
    """TLS to one node: its certificate checked against ``caCerts`` and the
    host name (``hostname``, else the node's acrnema.map host), ours shown
    when ``privateKey`` (and ``certKey``) are given, with the certificates
    after it in ``certKey`` as its chain; TLS 1.2 at least;
    ``files`` the key and certificate files named, ``certificateFile``
    the one of ours and ``certificates`` those read from it (None and
    none when we show none).
    ValueError names what is wrong in ``description``."""

    KEYWORDS = ("caCerts", "privateKey", "certKey", "hostname")

    def __init__(self, description):
        keywords = {}
        for part in description.strip().split(":"):
            name, equals, value = part.partition("=")
            if not equals or name.strip() not in self.KEYWORDS or not value.strip():
                raise ValueError(f"{part!r}: expected one of {', '.join(k + '=...' for k in self.KEYWORDS)}")
            keywords[name.strip()] = value.strip()
        if "caCerts" not in keywords:
            raise ValueError("caCerts=FILE (the authorities of the node's certificate) is required")
        self.authorities = certificatesIn(keywords["caCerts"], "caCerts")
        self.trustRoot = ssl.trustRootFromCertificates([ssl.Certificate(c) for c in self.authorities])
        self.clientCertificate, self.chain, self.certificates = None, [], []
        if "privateKey" in keywords:
            _, certificate, self.clientCertificate, self.chain = _identity(keywords["privateKey"],
                                                                           keywords.get("certKey"))
            self.certificates = [certificate, *self.chain]
        elif "certKey" in keywords:
            raise ValueError("certKey needs privateKey")
        self.certificateFile = keywords.get("certKey") or keywords.get("privateKey")
        self.hostname = keywords.get("hostname")
        self.files = [keywords[name] for name in ("caCerts", "privateKey", "certKey") if name in keywords]

    def creatorFor(self, host):
        """The connection creator for a node at ``host``, its certificate
        checked against ``host`` without the zone of an IPv6 address
        (``fe80::1%eth0``: the zone names our interface, the certificate
        the address)."""
        return _AuthorityNotingCreator(ssl.optionsForClientTLS(
            self.hostname or host.partition("%")[0], trustRoot=self.trustRoot, clientCertificate=self.clientCertificate,
            extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2, "extraCertChain": self.chain or None}),
            self.authorities)


@implementer(IOpenSSLClientConnectionCreator)
class _AuthorityNotingCreator:
    """A client connection creator that keeps, for ``tlsFailure``, which
    authorities each of its connections' peer had to be certified by."""

    def __init__(self, creator, authorities):
        self._creator = creator
        self._authorities = authorities

    def clientConnectionForTLS(self, tlsProtocol):
        connection = self._creator.clientConnectionForTLS(tlsProtocol)
        _authorities[connection] = self._authorities
        return connection


@implementer(IPlugin, IStreamServerEndpointStringParser)
class MutualTLSServerParser:
    """``mtls:PORT:privateKey=...:caCerts=...``: see the module docstring."""

    prefix = "mtls"

    def parseStreamServer(self, reactor, port, privateKey=None, caCerts=None, certKey=None,
                          extraCertChain=None, interface="", backlog=50):
        if not privateKey or not caCerts:
            raise ValueError("mtls: needs privateKey=FILE and caCerts=FILE (the authorities of client certificates)")
        options = mutualTLSOptions(privateKey, caCerts, certKey, extraCertChain)
        return endpoints.SSL4ServerEndpoint(reactor, int(port), options, backlog=int(backlog), interface=interface)


@implementer(IHandshakeListener)
class HandshakeListener:
    """A protocol mix-in: ``handshaking`` says whether the TLS handshake
    of its connection is still to complete (False over plain TCP), for
    the line that cuts a peer that does not complete it."""

    _handshakeDone = False

    @property
    def handshaking(self):
        return not self._handshakeDone and ISSLTransport.providedBy(self.transport)

    def handshakeCompleted(self):
        """IHandshakeListener: the TLS handshake is done."""
        self._handshakeDone = True


def securityOf(transport):
    """How a connection is secured, for log lines: "" over plain TCP, else
    "TLS", with the subject of the peer's certificate when it showed one."""
    if not ISSLTransport.providedBy(transport):
        return ""
    certificate = transport.getPeerCertificate()
    if certificate is None:
        return "TLS"
    return f"TLS, certificate {_subject(certificate)}"


def tlsFailure(reason, transport=None):
    """What went wrong in TLS, as text, when that ended a connection
    (``reason`` is connectionLost's Failure, ``transport`` its TLS transport:
    why the peer's certificate was refused, and whose); None when something
    else did; when the peer refused ours, or does not speak TLS at all,
    says so."""
    if reason.check(VerificationError):  # a node's certificate for another host name
        return f"certificate verify failed ({_mismatch(reason.value, transport)})"
    if not reason.check(SSL.Error):
        return None
    errors = reason.value.args[0] if reason.value.args and isinstance(reason.value.args[0], list) else []
    text = "; ".join(str(error[-1]) for error in errors if isinstance(error, tuple)) or str(reason.value)
    if any(notTLS in text for notTLS in _NOT_TLS):
        return f"{text} (the peer does not speak TLS on this port)"
    refusal = None
    if ISSLTransport.providedBy(transport):
        connection = transport.getHandle()
        refusal = _refusals.get(connection) or _outgoingRefusal(connection) or _oursRefused(text, connection)
    return f"{text} ({refusal})" if refusal else text


def warnOfTLSFailure(log, prefix, reason, transport):
    """Warn on ``log`` of what ``tlsFailure`` says ended a connection
    (``{prefix}TLS failed: ...``); that text, or None when TLS did not."""
    failure = tlsFailure(reason, transport)
    if failure is not None:
        log.warn("{prefix}TLS failed: {failure}", prefix=prefix, failure=failure)
    return failure


def _oursRefused(text, connection):
    """``the peer refused our certificate /CN=...`` when ``text`` is a TLS
    alert the peer sent about the certificate we showed, else None."""
    ours = connection.get_certificate()
    if ours is None or not _OURS_REFUSED.search(text):
        return None
    return f"the peer refused our certificate {_subject(ours)}"


def _mismatch(error, transport):
    """``not issued for HOST: /CN=...`` of service_identity's error."""
    names = ", ".join(_identityName(mismatch.mismatched_id) for mismatch in error.errors)
    chain = transport.getHandle().get_peer_cert_chain() if ISSLTransport.providedBy(transport) else None
    return f"not issued for {names}: {_subject(chain[0])}" if chain else f"not issued for {names}"


def _identityName(identity):
    """The host name (DNS_ID, bytes) or address (IPAddress_ID) asked for."""
    name = getattr(identity, "hostname", None)
    return name.decode("ascii", errors="replace") if isinstance(name, bytes) else str(name or identity.ip)
