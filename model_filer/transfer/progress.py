"""Progress bars for transfers: shown on a terminal for big files, silent otherwise."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

from model_filer.remotes import Progress, Remote

MIN_BYTES = 8 * 1024 * 1024  # below this a transfer is over before a bar is worth drawing
NOTICE_TICK = 0.5  # seconds between two looks at a store's silence


def _stream() -> IO[str] | None:
    for stream in (sys.stderr, sys.__stderr__):
        if stream is not None and stream.isatty():
            return stream
    return None


@contextlib.contextmanager
def byte_bar(total: int, desc: str) -> Iterator[Progress | None]:
    """Yield a thread-safe ``update(nbytes)`` callback, or ``None`` when no bar is shown."""
    stream = None if total < MIN_BYTES else _stream()  # (two ioctls saved per small model)
    if stream is None:
        yield None
        return
    from tqdm import tqdm

    lock = threading.Lock()
    with tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        leave=False,
        file=stream,
        dynamic_ncols=True,
    ) as bar:

        def update(n: int) -> None:
            with lock:
                bar.update(n)

        yield update


@contextlib.contextmanager
def count_bar(total: int, desc: str, stream: IO[str] | None = None) -> Iterator[Any]:
    """A bar counting models, for prefetch and ``pull --all``; ``None`` off a terminal."""
    stream = stream or _stream()
    if stream is None or total < 2:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="model", leave=False, file=stream) as bar:
        yield bar


@contextlib.contextmanager
def stall_notice(remote: Remote, what: str) -> Iterator[None]:
    """On a terminal, say what the block waits for once ``remote`` has been silent for its
    policy's ``notice_after`` seconds (once per stall); off a terminal, nothing."""
    stream = _stream()
    if stream is None:
        yield
        return
    stop = threading.Event()
    thread = threading.Thread(
        target=_watch, args=(remote, what, stream, stop), name="stall-notice", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _watch(remote: Remote, what: str, stream: IO[str], stop: threading.Event) -> None:
    shown = False
    while not stop.wait(NOTICE_TICK):
        silent = remote.silence.seconds()  # (read each time: a remote may swap its clock)
        if silent < remote.network.notice_after:
            shown = False
        elif not shown:
            shown = True
            stream.write(
                f"\rmodel_filer: waiting for {what}: no answer from the store for "
                f"{silent:.0f} s (gives up after {remote.network.stall_timeout:g} s of "
                "silence; Ctrl-C stops)\n"
            )
            stream.flush()
