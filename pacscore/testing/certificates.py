"""Throwaway X.509 material for TLS tests: an authority and the keys and
certificates it signs, written as PEM files."""

import datetime
import ipaddress
import os
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class Identity(NamedTuple):
    """PEM files of one party: ``key`` (private key) and ``certificate``."""

    key: str
    certificate: str


class Authority:
    """A certificate authority in ``folder`` (created), named ``name``:
    self-signed, or an issuing authority that ``issuer`` (an Authority)
    signed (``expired``: valid until a month ago; ``usage``: an
    ``ExtendedKeyUsageOID`` it is restricted to, none by default);
    ``issue`` makes identities it signs."""

    def __init__(self, folder, name, issuer=None, expired=False, usage=None):
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            _builder(subject, issuer._certificate.subject if issuer else subject, self._key.public_key(), expired)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True))
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        self._certificate = builder.sign(issuer._key if issuer else self._key, hashes.SHA256())
        self.certificate = os.path.join(folder, f"{name}-ca.pem")
        _write(self.certificate, self._certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, name, server=False, expired=False, usage=None, addresses=()):
        """An ``Identity`` with common name ``name``, for a TLS server (with
        ``localhost``, 127.0.0.1 and the IP ``addresses`` as its names) or a
        client; ``expired``:
        valid until a month ago; ``usage``: its extended key usage (an
        ``ExtendedKeyUsageOID``) when not that of a server or client."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]),
                           self._certificate.subject, key.public_key(), expired)
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost")] + [x509.IPAddress(ipaddress.ip_address(address))
                                               for address in ("127.0.0.1", *addresses)]), critical=False)
        usage = usage or (ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH)
        certificate = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(
            self._key, hashes.SHA256())
        identity = Identity(os.path.join(self.folder, f"{name}.key"), os.path.join(self.folder, f"{name}.pem"))
        _write(identity.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        _write(identity.certificate, certificate.public_bytes(serialization.Encoding.PEM))
        return identity

    def chain(self, identity):
        """The path of a PEM file of ``identity``'s certificate followed by
        this authority's (a full-chain file, for an issuing authority)."""
        path = identity.certificate[:-len(".pem")] + "-chain.pem"
        with open(identity.certificate, "rb") as leaf, open(self.certificate, "rb") as issuer:
            _write(path, leaf.read() + issuer.read())
        return path


def _builder(subject, issuer, publicKey, expired=False):
    """Valid from yesterday for a year (beyond start-up's warning of a
    certificate that expires soon), or, ``expired``, until a month ago."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(days=92 if expired else 1)
    end = now - datetime.timedelta(days=31) if expired else now + datetime.timedelta(days=365)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(publicKey)
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end))


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
