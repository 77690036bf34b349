"""A tiny HTTP/1.1 server on a real socket, for transport tests.

It answers every request with ``200 ok`` and records what it saw (request line, headers,
TLS SNI). ``drip_seconds`` makes it send its response one byte at a time, that many seconds
apart (``drip_headers`` also drips the status line and headers), to test deadlines against a
peer that never stalls long enough to trip an inactivity timeout. Every drip is bounded by
the response's length, so a test using it always ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = ["RawHttpServer", "SeenRequest", "TlsFiles", "make_tls_files"]


@dataclass(frozen=True, slots=True)
class SeenRequest:
    request_line: str
    headers: dict[str, str]
    server_name: str | None


@dataclass
class RawHttpServer:
    host: str = "127.0.0.1"
    port: int = 0
    drip_seconds: float = 0.0
    drip_headers: bool = False
    body: bytes = b"ok"
    ssl_context: ssl.SSLContext | None = None
    seen: list[SeenRequest] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _server_names: dict[int, str | None] = field(default_factory=dict)

    async def __aenter__(self) -> RawHttpServer:
        if self.ssl_context is not None:
            self.ssl_context.sni_callback = self._remember_sni
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, ssl=self.ssl_context
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def _remember_sni(
        self, ssl_object: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext
    ) -> None:
        self._server_names[id(ssl_object)] = server_name

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        server_name = None if ssl_object is None else self._server_names.get(id(ssl_object))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                self.seen.append(SeenRequest(lines[0], headers, server_name))
                await self._respond(writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, writer: asyncio.StreamWriter) -> None:
        head = (
            f"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
            f"content-length: {len(self.body)}\r\n\r\n"
        ).encode()
        if not self.drip_seconds:
            writer.write(head + self.body)
            await writer.drain()
            return
        if self.drip_headers:
            await self._drip(writer, head)
        else:
            writer.write(head)
            await writer.drain()
        await self._drip(writer, self.body)

    async def _drip(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        for index in range(len(data)):
            writer.write(data[index : index + 1])
            await writer.drain()
            await asyncio.sleep(self.drip_seconds)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_certificate: Path
    certificate: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_certificate))


def make_tls_files(directory: Path, *, dns_name: str) -> TlsFiles:
    """A private CA and a server certificate for ``dns_name`` (only), signed by it."""
    from cryptography import x509  # noqa: PLC0415  (test-only, heavy)
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        ca_certificate=directory / "ca.pem",
        certificate=directory / "server.pem",
        key=directory / "server.key",
    )
    files.ca_certificate.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
