"""A lean HTTP/1.1 client for floods: prebuilt request bytes over a fresh asyncio connection each.

A load generator on the same 2 CPUs as the server must cost little per request, or what it
measures is itself: httpx spends about a millisecond of CPU building and parsing each multipart
request, so at hundreds of requests per second it queued its own requests behind each other.
Here a request is built once and each send is a connect, a write and a read.
"""

import asyncio
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def multipart_post(path: str, field: str, filename: str, payload: bytes, form: dict[str, str]) -> bytes:
    """The bytes of one POST `path` with a file field and text fields (multipart/form-data)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in form.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + payload
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()


async def exchange(host: str, port: int, request: bytes) -> RawResponse:
    """Send `request` on a new connection and read the whole response (Content-Length framed).

    A response may arrive before the request is fully written (a refusal from the headers): it
    is read as soon as the server sends it, and a write the server no longer reads is dropped.
    """
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    drain = asyncio.ensure_future(writer.drain())
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return RawResponse(int(status_line.split()[1]), headers, body)
    finally:
        drain.cancel()
        writer.close()
