"""What only the Google Cloud Storage remote does: its credentials chain, its typed refusals,
its lazy import, and its uploads of parts (tests/remotes/test_contract.py has the shared cases).

Against the session's fake-gcs-server, or a loopback server that answers as GCS refuses.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from model_filer import CredentialsError, Filer, RemoteError, RemoteUnreachableError
from model_filer.remotes import gcs as gcs_module
from model_filer.remotes import get_remote
from tests.remotes.test_contract import QUICK, _Collect
from tests.support.faultproxy import FaultProxy
from tests.support.gcsserver import GCS_BUCKET
from tests.support.gitrepo import environ

MB = 1024 * 1024
KEY = "m/" + "0" * 64 + ".pkl"


@pytest.fixture
def refusing(gcs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A loopback server that answers every request 403 as GCS does; yields the paths asked."""
    asked: list[str] = []

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = json.dumps(
                {"error": {"code": 403, "message": "caller does not have storage.objects.get"}}
            ).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()


def test_a_forbidden_answer_is_a_credentials_error_with_the_fix(refusing):
    with pytest.raises(CredentialsError, match="Storage Object Admin role"):
        get_remote("gcs", f"gs://{GCS_BUCKET}/p").size_of(KEY)
    assert len(refusing) == 1  # refused: not retried


def test_no_credentials_anywhere_says_how_to_log_in(gcs_env, monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")  # the real service: ADC, then the metadata server

    with pytest.raises(CredentialsError, match="gcloud auth application-default login"):
        get_remote("gcs", f"gs://{GCS_BUCKET}/p").size_of(KEY)


def test_a_key_file_that_is_not_one_is_a_credentials_error(gcs_env, monkeypatch, tmp_path):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    bad = tmp_path / "key.json"
    bad.write_text("{}")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(bad))

    with pytest.raises(CredentialsError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        get_remote("gcs", f"gs://{GCS_BUCKET}/p").size_of(KEY)


_IMPORTS = """
import sys
from model_filer import Filer
from model_filer_hooks import no_local_models, check_remote_models, prefetch_models
filer = Filer(sys.argv[1], "gs://bucket/models", remote_type="gcs")
filer.dump({"a": 1}, "m")
filer.load("m")
print(sorted(m for m in sys.modules if m.startswith("google")))
"""


def test_the_client_is_imported_only_when_a_transfer_needs_it(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS, str(tmp_path / "m")],
        env=environ(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"


_WITHOUT_EXTRA = """
import sys
sys.modules["google.cloud.storage"] = None  # as if the extra were not installed
from model_filer.remotes import get_remote
get_remote("gcs", "gs://bucket/models").size_of("m/x.pkl")
"""


def test_without_the_extra_the_error_names_it():
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRA], env=environ(), capture_output=True, text=True
    )
    assert "pip install 'ds-model-filer[gcs]'" in done.stderr
    assert "UnknownRemoteTypeError" in done.stderr


@pytest.mark.parametrize(
    "address", ["gs://", "gs://UPPER/x", "gs://a/../b", "gs://ab", "gs://b/p/../q", 42]
)
def test_a_malformed_address_is_refused_with_the_forms_it_takes(address, tmp_path):
    from model_filer import InvalidNameError

    with pytest.raises(InvalidNameError):
        Filer(tmp_path / "m", address, remote_type="gcs")  # type: ignore[arg-type]


def test_an_address_is_spelled_one_way(gcs_env):
    assert get_remote("gcs", f"{GCS_BUCKET}/models/").address == f"gs://{GCS_BUCKET}/models"
    assert get_remote("gcs", f"gs://{GCS_BUCKET}").address == f"gs://{GCS_BUCKET}"


def test_a_big_upload_goes_as_parts_that_never_sit_at_the_final_key(gcs_env, tmp_path, monkeypatch):
    """A part is at a temporary key until the compose; the parts are gone afterwards."""
    from google.cloud import storage

    remote = get_remote("gcs", f"gs://{GCS_BUCKET}/parts-{os.getpid()}")
    data = os.urandom(20 * MB)
    src = tmp_path / "big"
    src.write_bytes(data)
    seen: list[str] = []
    send = gcs_module.GCSRemote._send

    def spy(self, blob, *args):  # which keys get bytes (the client itself is not touched)
        seen.append(blob.name)
        return send(self, blob, *args)

    monkeypatch.setattr(gcs_module.GCSRemote, "_send", spy)
    remote.upload(src, KEY, "0" * 64, None)

    assert len(seen) == 3 and all("/.model_filer_uploads/" in name for name in seen)
    assert remote.size_of(KEY) == len(data)
    left = storage.Client().list_blobs(GCS_BUCKET, prefix=f"parts-{os.getpid()}/.model_filer")
    assert list(left) == []


def test_a_part_of_the_wrong_bytes_is_sent_again(gcs_env, tmp_path):
    """A part the store holds is kept only if its MD5 is the local part's."""
    remote = get_remote("gcs", f"gs://{GCS_BUCKET}/md5-{os.getpid()}")
    data = os.urandom(20 * MB)
    src = tmp_path / "big"
    src.write_bytes(data)
    part = gcs_module._part_size(len(data))
    wrong = tmp_path / "wrong"
    wrong.write_bytes(os.urandom(part))
    remote.upload(wrong, f"{gcs_module.UPLOADS}/{KEY}/{part}/00000", "0" * 64, None)

    remote.upload(src, KEY, "0" * 64, None)

    sink = _Collect()
    remote.download_from(KEY, 0, sink, None, len(data))
    assert bytes(sink.data) == data


def test_an_upload_that_leaves_another_size_is_never_synced(gcs_env, tmp_path, monkeypatch):
    """The final object's size is checked before the upload counts (a store that dropped
    bytes, simulated by a compose that leaves out the last part)."""
    address = f"gs://{GCS_BUCKET}/short-{os.getpid()}"
    filer = Filer(tmp_path / "m", address, remote_type="gcs", storage="plain")  # one object
    filer.dump(os.urandom(20 * MB), "big")
    compose = gcs_module.GCSRemote._upload_parts

    def short(self, src, key, sha256, progress):
        return compose(self, src, key, sha256, progress) - 1

    monkeypatch.setattr(gcs_module.GCSRemote, "_upload_parts", short)

    with pytest.raises(Exception, match="after the upload, not"):
        filer.push("big")
    assert filer.list_files()[0].state != "synced"


@pytest.fixture
def stored(gcs_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """An object of 3 MB at :data:`KEY`: its remote's address and its bytes."""
    remote = get_remote("gcs", f"gs://{GCS_BUCKET}/cut-{os.getpid()}")
    data = os.urandom(3 * MB)
    src = tmp_path_factory.mktemp("stored") / "src"
    src.write_bytes(data)
    remote.upload(src, KEY, "0" * 64, None)
    return remote.address, data


def _downloads(method: str, path: str) -> bool:
    return "/download/" in path


def test_a_cut_body_is_asked_again_from_where_it_stopped(gcs_env, stored, monkeypatch):
    """A download whose body is cut (three times) asks for the rest only, and every byte
    arrives once, in order."""
    address, data = stored
    upstream = gcs_env["STORAGE_EMULATOR_HOST"]
    with FaultProxy(
        upstream, share=1.0, faults=["truncate"], budget=3, applies=_downloads
    ) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        sink = _Collect()
        get_remote("gcs", address).download_from(KEY, 1000, sink, None, len(data))

    assert proxy.injected["truncate"] == 3 and proxy.count("GET", "/download/") == 4
    assert sink.offset == 1000 and bytes(sink.data) == data[1000:]
    assert proxy.bytes_down == len(data) - 1000  # no byte sent twice


def test_a_body_that_stops_moving_costs_the_stall_bound(gcs_env, stored, monkeypatch):
    """A download whose body stops halfway (a stuck link) gives up at the stall bound, not
    after every attempt the policy allows."""
    address, data = stored
    upstream = gcs_env["STORAGE_EMULATOR_HOST"]
    with FaultProxy(upstream, share=1.0, faults=["stall"], applies=_downloads) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        with pytest.raises(RemoteUnreachableError, match="No answer from"):
            get_remote("gcs", address, QUICK).download(KEY, _Collect(), None, len(data))

    assert 1 <= proxy.count("GET", "/download/") <= 3  # QUICK would allow 10 attempts


def test_a_read_past_the_end_leaves_no_connection_the_next_read_finds_reset(
    gcs_env, stored, monkeypatch
):
    """fake-gcs-server closes its connection after a 416 (saying nothing): a read that
    pooled it would make the next read on it fail, retried after a backoff. Seen as the
    failures our retry loop is asked to judge."""
    address, data = stored
    judged: list[str] = []
    transient = gcs_module._transient
    monkeypatch.setattr(
        gcs_module, "_transient", lambda exc: judged.append(repr(exc)) or transient(exc)
    )
    remote = get_remote("gcs", address)
    for _ in range(50):  # (pooling it: about 1 in 5 of the next reads was reset)
        assert remote.read_range(KEY, len(data), 10) == b""
        assert remote.read_range(KEY, 0, 10) == data[:10]

    assert judged == []


@pytest.fixture
def ignoring_range(gcs_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[bytes]:
    """A loopback server that answers every GET with the whole of its 1000 bytes (HTTP 200),
    whatever ``Range`` asks, as a store or proxy that ignores it; returns the bytes."""
    data = os.urandom(1000)

    class Whole(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Whole)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
    yield data
    server.shutdown()
    server.server_close()


def test_a_store_that_ignores_range_serves_only_what_it_can_cheaply(ignoring_range):
    """Its first bytes serve a read from 0, and nothing one past its end; a read in the
    middle is refused: taking the whole object for each slice would cost every read of a
    pack the whole pack."""
    data = ignoring_range
    remote = get_remote("gcs", f"gs://{GCS_BUCKET}/whole", QUICK)

    assert remote.read_range(KEY, 0, 10) == data[:10]
    assert remote.read_range(KEY, 0, 5000) == data
    assert remote.read_range(KEY, 1000, 10) == b""
    with pytest.raises(RemoteError, match="does not serve byte ranges") as info:
        remote.read_range(KEY, 500, 10)
    assert info.value.key == KEY and not isinstance(info.value, RemoteUnreachableError)


def test_messages_carry_no_bearer_token_or_session_id():
    text = (
        "PUT http://h/upload?upload_id=ABCDEF123&x=1 Authorization: Bearer ya29.secret-token "
        "https://user:pw@proxy/b X-Goog-Signature=deadbeef"
    )
    cleaned = gcs_module.scrub(text)
    for secret in ("ABCDEF123", "ya29.secret-token", "pw@", "deadbeef"):
        assert secret not in cleaned


def test_errors_are_remote_errors_naming_the_address(gcs_env):
    remote = get_remote("gcs", "gs://no-such-bucket-gcs/models")
    with pytest.raises(RemoteError) as info:
        remote.list_sizes("")
    assert info.value.address == "gs://no-such-bucket-gcs/models"


def test_two_pushes_of_the_same_bytes_at_once_both_succeed(gcs_env, tmp_path, monkeypatch):
    """The second to compose finds the parts gone (the first composed and removed them): the
    object is whole, so its push is done too."""
    address = f"gs://{GCS_BUCKET}/twice-{os.getpid()}"
    src = tmp_path / "big"
    src.write_bytes(os.urandom(20 * MB))
    send_parts = gcs_module.GCSRemote._send_parts
    raced: list[bool] = []

    def then_the_other(self, *args):
        names = send_parts(self, *args)
        if not raced:  # the other push composes (and removes the parts) in between
            raced.append(True)
            get_remote("gcs", address).upload(src, KEY, "0" * 64, None)
        return names

    monkeypatch.setattr(gcs_module.GCSRemote, "_send_parts", then_the_other)

    get_remote("gcs", address).upload(src, KEY, "0" * 64, None)

    assert raced and get_remote("gcs", address).size_of(KEY) == 20 * MB


def test_a_store_that_ignores_range_starts_the_sink_over(ignoring_range):
    """A resumed download answered 200 (Range ignored) writes from byte 0, after telling the
    sink so, never the whole object at the resume offset."""
    data = ignoring_range
    sink = _Collect()
    get_remote("gcs", f"gs://{GCS_BUCKET}/p").download_from(KEY, 500, sink, None, len(data))
    assert sink.offset == 0 and bytes(sink.data) == data
