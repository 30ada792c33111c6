"""A loopback TCP proxy that adds a fixed delay to every HTTP request passing through it.

Between a client and a server that share two cores nothing can overlap, so a benchmark of
parallel transfers needs the round-trip time a real S3 endpoint has. This proxy gives it: it
listens on 127.0.0.1, forwards each connection to an upstream server on loopback, and holds the
first chunk of each new request (a client chunk that starts with an HTTP method) for
``--delay-ms`` before forwarding it. Each connection waits on its own, so parallel connections
overlap their delays as they would on a network. With ``--rate-mb``, each direction is also a
link of that many MB/s shared by all connections (a slow office or home uplink), so that what
crosses it is what costs time; otherwise bytes pass untouched.

    python benchmarks/latency_proxy.py --upstream 127.0.0.1:8333 --delay-ms 20 [--rate-mb 20]

prints the port it listens on, then serves until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

LOOPBACK = ("127.0.0.1", "localhost", "::1")
METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ")
CHUNK = 256 * 1024
RATED_CHUNK = 64 * 1024  # smaller steps under a rate cap: connections interleave finely


class Link:
    """One direction of a link of ``rate`` bytes/s (0: unlimited), shared by every connection:
    each piece is sent once the link has carried the pieces booked before it."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.free_at = 0.0  # when the link has sent everything booked so far

    async def carry(self, nbytes: int) -> None:
        if self.rate:
            now = time.monotonic()
            self.free_at = max(self.free_at, now) + nbytes / self.rate
            await asyncio.sleep(self.free_at - now)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, link: Link
) -> None:
    """Copy ``reader`` to ``writer`` through ``link``; with ``delay``, hold each request's
    first chunk."""
    try:
        while data := await reader.read(RATED_CHUNK if link.rate else CHUNK):
            if delay and data.startswith(METHODS):
                await asyncio.sleep(delay)
            await link.carry(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _handle(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream: tuple[str, int],
    delay: float,
    links: tuple[Link, Link],
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(*upstream)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        _pump(client_reader, server_writer, delay, links[0]),
        _pump(server_reader, client_writer, 0.0, links[1]),
    )


async def serve(upstream: tuple[str, int], delay: float, port: int = 0, rate: float = 0) -> None:
    """Serve until cancelled, each direction capped at ``rate`` bytes/s (0: no cap); print
    the listening port on stdout first."""
    links = (Link(rate), Link(rate))  # up, down
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, upstream, delay, links), "127.0.0.1", port
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def _upstream(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if host not in LOOPBACK or not port.isdigit():
        raise argparse.ArgumentTypeError(f"upstream must be a loopback HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--upstream", type=_upstream, required=True, help="loopback HOST:PORT")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="delay per request")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument(
        "--rate-mb", type=float, default=0.0, help="cap each direction at this many MB/s"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.upstream, args.delay_ms / 1000.0, args.port, args.rate_mb * 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
