"""What a chunked pull and an upload ask of S3: the requests themselves, seen through
botocore's events.

Against the session's SeaweedFS. Time is never asserted: only which requests are made, and
what botocore is asked to compute for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from model_filer import Filer
from model_filer.errors import RemoteError
from model_filer.remotes import Network
from model_filer.remotes.s3 import S3Remote
from model_filer.remotes.sources import BufferSource
from model_filer.storage import parse_manifest
from model_filer.storage.packs import spans
from model_filer.storage.stored import decode
from model_filer.transfer.chunked import Chunked

MB = 1024 * 1024


def _pushed(tmp_path: Path, s3_address: str, size: int) -> tuple[Any, bytes]:
    data = os.urandom(size)
    producer = Filer(tmp_path / "producer", s3_address)
    producer.dump(data, "big", push=True)
    return producer.list_files()[0], producer.model_path("big").read_bytes()


def _watched(s3_address: str) -> tuple[S3Remote, list[tuple[str, Any]]]:
    """A remote, and every call its client makes: (operation, response checksums it
    validates)."""
    remote = S3Remote(s3_address)
    calls: list[tuple[str, Any]] = []

    def seen(model: Any, context: dict[str, Any], **_: Any) -> None:
        calls.append((model.name, context.get("checksum", {}).get("response_algorithms")))

    remote.client.meta.events.register_last("after-call.s3", seen)
    return remote, calls


@pytest.mark.parametrize("range_max", [16 * MB, 1 * MB])
def test_a_chunked_pull_reads_its_map_then_each_run_of_chunks_with_one_ranged_get(
    tmp_path: Path, s3_env: Any, s3_address: str, range_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model_filer.storage.packs as packs

    monkeypatch.setattr(packs, "RANGE_MIN", range_max)
    monkeypatch.setattr(packs, "RANGE_MAX", range_max)
    entry, pickle = _pushed(tmp_path, s3_address, 9 * MB)
    remote, calls = _watched(s3_address)
    chunked = Chunked(remote, lambda name: tmp_path / f"t-{name}", 4)
    partial = tmp_path / "partial"
    size, sha, manifest, _ = chunked.fetch_chunks(entry.key, entry, partial, None, dict)
    assert (size, sha) == (entry.size, entry.sha256)
    assert partial.read_bytes() == pickle
    ops = [op for op, _ in calls]
    assert "HeadObject" not in ops  # no round trip before the map's bytes move
    chunks = parse_manifest(manifest, entry.sha256, entry.size)
    reads = spans({c.sha256: c for c in chunks}.values(), range_max)
    assert len(chunks) > 20 and len({c.pack for c in chunks}) == 1  # ~9 MB: one pack
    # Back to back, up to the bound; a chunk cut at FastCDC's maximum (1 MiB) is stored in one
    # byte more than the 1 MiB bound and read alone (random bytes: an occasional cut).
    assert all(r.length <= range_max or len(r.chunks) == 1 for r in reads)
    assert len(reads) == 1 if range_max == 16 * MB else len(reads) >= 9
    assert ops.count("GetObject") == 1 + len(reads)  # the map, then each run once
    assert not any(validated for _, validated in calls)  # (the sha256 checks the bytes)


def test_a_verified_get_skips_botocores_crc_of_its_body(
    tmp_path: Path, s3_env: Any, s3_address: str
) -> None:
    # Every download is checked by the registry's sha256: a CRC32 of the same bytes on top
    # is CPU a 1 GiB pull of chunks paid and a ranged download never did.
    entry, pickle = _pushed(tmp_path, s3_address, 1 * MB)
    remote, calls = _watched(s3_address)
    sink = _Sink()
    remote.download(entry.key, sink, None, entry.size + 1)
    assert [op for op, _ in calls] == ["GetObject"]
    assert not calls[0][1]  # no response checksum asked of botocore
    assert decode(bytes(sink.data), entry.size, "object") == pickle


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: Any) -> int:
        self.data += data
        return len(data)

    def seekable(self) -> bool:
        return False


@pytest.mark.parametrize("size", [1 * MB, 6 * MB, 17 * MB])  # a PUT, s3transfer's, multipart
def test_a_body_altered_after_signing_is_refused_by_the_store(
    tmp_path: Path, s3_env: Any, s3_address: str, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What makes the store refuse bytes that changed on the way: over plain HTTP, SeaweedFS
    # takes the signed sha256 as sent and checks botocore's CRC32 header, so an upload must
    # keep it (dropping it to save CPU was tried, and reverted).
    monkeypatch.delenv("AWS_REQUEST_CHECKSUM_CALCULATION", raising=False)  # (botocore's default)
    data = os.urandom(size)
    remote = S3Remote(s3_address, Network(max_attempts=1))  # (an altered body is not resent)
    checked: list[bool] = []

    def alter(request: Any, **_: Any) -> None:
        body = request.body
        if request.method != "PUT" or not body:
            return
        names = [h.lower() for h in request.headers]  # (over https: a trailer, announced)
        checked.append(any(h.startswith("x-amz-checksum-") or h == "x-amz-trailer" for h in names))
        payload = bytearray(body.read() if hasattr(body, "read") else body)
        payload[len(payload) // 2] ^= 0xFF
        request.body = bytes(payload)

    remote.client.meta.events.register_last("before-send.s3", alter)
    sha = hashlib.sha256(data).hexdigest()
    key = f"objects/{sha}"
    try:
        with pytest.raises(RemoteError):
            remote.upload(BufferSource([data]), key, sha, None)
        assert checked and all(checked)
        assert remote.stat(key) is None
    finally:  # (a multipart upload left unfinished is no object, but holds its parts)
        client, bucket = remote.client, remote.bucket
        with contextlib.suppress(Exception):  # (never hides the test's own failure)
            for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                if upload["Key"].endswith(key):
                    client.abort_multipart_upload(
                        Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
