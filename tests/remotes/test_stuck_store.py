"""A store that accepts connections and never answers (a stuck VPN or proxy), and a slow link.

Issue 18, item 4. ``StuckServer`` (tests/support/faultproxy.py) accepts TCP on 127.0.0.1 and never
sends a byte; ``FaultProxy`` in front of the session's SeaweedFS throttles bodies or stops
mid-body. boto3 runs unchanged. Policies with timeouts of a second or less keep the tests short;
no test asserts a duration: each asserts the typed error, how many requests the store saw (the
bound comes from the silence, not from attempts multiplied), the policy botocore and
s3transfer were given, the terminal line, or that a transfer slower than the stall bound
finishes.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_filer import FAIL_FAST, PATIENT, Filer, Network, RemoteUnreachableError
from model_filer.remotes import get_remote
from model_filer.remotes.s3 import RANGE_WINDOW, S3Remote, _Sending
from tests.support.faultproxy import FaultProxy, StuckServer
from tests.support.gitrepo import (
    NULL_SHA,
    commit,
    git,
    init_repo,
    registry_bytes,
    sample_entry,
)
from tests.support.machines import another_machine

ADDRESS = "s3://stuck-store/models"
MB = 1024 * 1024
GAVE_UP = r"No answer from the S3 store at http://127\.0\.0\.1:\d+ for \d+ s to download s3://"
SLOW_SEED = 5  # cuts both test bodies past their first 2 s (checked in the test)
#: Gives up on the second silent attempt: the first ends after 0.5 s of silence, and
#: 0.5 + (0.5 + 0.5) + 1 (backoff) <= 3; the second after >= 1.0 s, and 1.0 + 1 + 2 > 3.
QUICK = Network(
    connect_timeout=0.5, read_timeout=0.5, max_attempts=10, stall_timeout=3.0, notice_after=0.3
)


@pytest.fixture
def stuck(monkeypatch: pytest.MonkeyPatch) -> Iterator[StuckServer]:
    """A stuck listener as the S3 endpoint, with made-up credentials (loopback only)."""
    with StuckServer(lifetime=120) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stuck-test-key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stuck-test-secret-0123456789")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield server


def registry_folder(path: Path, size: int, names: tuple[str, ...] = ("m0",)) -> Path:
    """A model folder whose registry names synced models of ``size`` bytes on the stuck store."""
    path.mkdir(parents=True, exist_ok=True)
    entries = [sample_entry(name, size=size) for name in names]
    (path / ".s3_registry").write_bytes(registry_bytes("s3", ADDRESS, *entries))
    return path


# -- the bound: a stall, not attempts multiplied -------------------------------------------------
@pytest.mark.parametrize(
    ("size", "in_flight"),
    [
        pytest.param(10, 1, id="one-GET"),
        pytest.param(8 * MB, 1, id="s3transfer"),  # its HEAD never comes back
        pytest.param(40 * MB, RANGE_WINDOW, id="ranged-resumable"),
    ],
)
def test_load_on_a_stuck_store_gives_up_on_the_silence(tmp_path, stuck, size, in_flight):
    filer = Filer(registry_folder(tmp_path / "models", size), ADDRESS, "s3", network=QUICK)

    with pytest.raises(RemoteUnreachableError, match=GAVE_UP):
        filer.load("m0")

    # botocore alone would try each request 10 times (and s3transfer 10 times that).
    assert stuck.connections <= 2 * in_flight


def test_a_call_right_after_a_give_up_does_not_wait_again(stuck):
    first = get_remote("s3", ADDRESS, QUICK)
    other_bucket = get_remote("s3", "s3://stuck-other/models", QUICK)  # same endpoint
    other_bucket.client  # noqa: B018 - built now: a busy machine may take a while
    with pytest.raises(RemoteUnreachableError, match="No answer from the S3 store"):
        first.size_of("m0/x.pkl")
    seen = stuck.connections

    with pytest.raises(RemoteUnreachableError, match="on which the last call gave up"):
        other_bucket.size_of("m0/x.pkl")
    assert stuck.connections == seen


def test_botocore_and_s3transfer_are_given_the_policy():
    remote = S3Remote(ADDRESS, QUICK)
    config = remote.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (0.5, 0.5)
    # botocore's "max_attempts" would count retries (one attempt more than asked).
    assert config.retries == {"mode": "standard", "total_max_attempts": 10}
    assert remote._manager("download").config.num_download_attempts == 10


def test_the_default_policies_obey_the_targets():
    """load gives up within 90 s; a hook within 15 s, its process and git included (~1 s)."""
    for policy, target in ((PATIENT, 90.0), (FAIL_FAST, 14.0)):
        assert max(policy.stall_timeout, policy.connect_timeout + policy.read_timeout) <= target
        assert policy.connect_timeout + policy.read_timeout < policy.stall_timeout  # retries fit
    assert PATIENT.notice_after == 5.0


# -- a link that stops mid-body: s3transfer's own retries obey the bound -------------------------
@pytest.fixture
def pushed(tmp_path, s3_env, s3_address) -> tuple[Path, dict[str, bytes]]:
    folder = tmp_path / "models"
    filer = Filer(folder, s3_address, "s3")
    models = {"small": os.urandom(300 * 1024), "big": os.urandom(6 * MB)}
    for name, data in models.items():
        filer.dump(data, name, push=True)
    another_machine()
    for name in models:
        (folder / f"{name}.pkl").unlink()
    return folder, models


@pytest.mark.parametrize("name", ["small", "big"])
def test_a_body_that_stops_midway_gives_up_on_the_silence(pushed, s3_env, s3_address, name):
    folder, _ = pushed
    only_gets = lambda method, path: method == "GET"  # noqa: E731
    with FaultProxy(s3_env.endpoint_url, share=1.0, faults=["stall"], applies=only_gets) as fp:
        os.environ["AWS_ENDPOINT_URL"] = fp.url  # (s3_env's monkeypatch restores it)
        # After the body's stall (0.5 s), one more attempt could end past the bound:
        # 0.5 + (0.5 + 0.5) > 1.4. Without the bound: 10 x 10 GETs.
        filer = Filer(folder, s3_address, "s3", network=QUICK._replace(stall_timeout=1.4))
        with pytest.raises(RemoteUnreachableError, match="No answer from the S3 store"):
            filer.load(name)
        assert fp.count("GET") == 1


# -- a slow link that keeps moving is never cut ---------------------------------------------------
@pytest.mark.parametrize(("name", "piece"), [("small", 16 * 1024), ("big", 256 * 1024)])
def test_a_slow_but_moving_download_finishes_past_the_stall_timeout(
    pushed, s3_env, s3_address, name, piece
):
    """The first GET is cut after moving slowly for longer than the read timeout: its retry
    starts (a clock that counted the moving seconds as silence would give up there), and the
    whole download takes longer than the stall bound."""
    folder, models = pushed
    pause = 0.25  # between two pieces: well under the read timeout
    policy = Network(connect_timeout=0.5, read_timeout=2.0, max_attempts=2, stall_timeout=3.0)
    only_gets = lambda method, path: method == "GET"  # noqa: E731
    with FaultProxy(
        s3_env.endpoint_url,
        share=1.0,
        faults=["truncate"],
        applies=only_gets,
        budget=1,
        seed=SLOW_SEED,
        throttle=(piece, pause),
    ) as fp:
        os.environ["AWS_ENDPOINT_URL"] = fp.url
        assert Filer(folder, s3_address, "s3", network=policy).load(name) == models[name]
        assert fp.injected["truncate"] == 1
        moving = -(-fp.cuts[0] // piece) * pause  # seconds the cut body took to arrive
        assert moving > policy.read_timeout
        assert fp.bytes_down // piece * pause > policy.stall_timeout


# -- the terminal line -------------------------------------------------------------------------
LOAD_SCRIPT = """
import sys
from model_filer import Filer, Network, RemoteUnreachableError
policy = Network(connect_timeout=0.5, read_timeout=1.0, max_attempts=3, stall_timeout=2.5,
                 notice_after=0.3)
try:
    Filer(sys.argv[1], sys.argv[2], "s3", network=policy).load("m0")
except RemoteUnreachableError:
    print("RemoteUnreachableError", file=sys.stderr)
"""


def _run(folder: Path, stderr_is_a_tty: bool) -> str:
    """The stderr of a process loading ``m0`` from the stuck store, as a pty or a pipe."""
    argv = [sys.executable, "-c", LOAD_SCRIPT, str(folder), ADDRESS]
    if not stderr_is_a_tty:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        return done.stderr
    leader, follower = pty.openpty()
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower) as p:
        os.close(follower)
        out = b""
        deadline = time.monotonic() + 60  # a hung test fails instead of hanging the suite
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            try:
                data = os.read(leader, 4096) if ready else b""
            except OSError:  # the pty closed: the process is gone
                break
            if ready and not data:
                break
            out += data
            if not ready and p.poll() is not None:
                break
        p.kill()
    os.close(leader)
    return out.decode(errors="replace")


def test_a_terminal_says_what_it_waits_for(tmp_path, stuck):
    folder = registry_folder(tmp_path / "models", 10)

    shown = _run(folder, stderr_is_a_tty=True)

    assert f"model_filer: waiting for 'm0' from {ADDRESS}/m0/" in shown
    assert "no answer from the store for" in shown
    assert "RemoteUnreachableError" in shown
    assert shown.count("waiting for") == 1  # one line per stall, not one per tick


def test_off_a_terminal_nothing_is_printed(tmp_path, stuck):
    folder = registry_folder(tmp_path / "models", 10)

    assert _run(folder, stderr_is_a_tty=False).strip() == "RemoteUnreachableError"


# -- the hooks -----------------------------------------------------------------------------------
HOOK_POLICY = Network(connect_timeout=0.5, read_timeout=1.0, max_attempts=3, stall_timeout=3.0)


@pytest.fixture
def stuck_clone(tmp_path, stuck, monkeypatch) -> Path:
    """A fresh clone whose two registries name models on the stuck store."""
    origin = init_repo(tmp_path / "origin")
    registry_folder(origin / "models", 10, ("a", "b", "c"))
    registry_folder(origin / "more", 10, ("d",))
    commit(origin, "models")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    monkeypatch.chdir(clone)
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "PRE_COMMIT_CHECKOUT_TYPE"):
        monkeypatch.delenv(name, raising=False)
    return clone


def test_prefetch_on_a_stuck_store_never_fails_the_checkout(stuck_clone, monkeypatch, capsys):
    from model_filer_hooks import prefetch_models

    monkeypatch.setattr(prefetch_models, "FAIL_FAST", HOOK_POLICY)  # the hooks' policy, shorter

    assert prefetch_models.main(["--hook-stage", "post-checkout", NULL_SHA, "HEAD", "1"]) == 0

    out = capsys.readouterr().out
    assert "No answer from the S3 store" in out
    assert "model-filer pull --dir models --all" in out
    assert "model-filer pull --dir more --all" in out
    assert "0 model(s) fetched" in out


def test_pre_push_on_a_stuck_store_refuses_and_says_how_to_override(
    stuck_clone, monkeypatch, capsys
):
    from model_filer_hooks import check_remote_models

    monkeypatch.setattr(check_remote_models, "FAIL_FAST", HOOK_POLICY)
    monkeypatch.setenv("PRE_COMMIT_TO_REF", git(stuck_clone, "rev-parse", "HEAD").stdout.strip())

    assert check_remote_models.main([]) == 1

    out = capsys.readouterr().out
    assert "cannot check that the remote has the models registries name" in out
    assert "No answer from the S3 store" in out
    assert "git push --no-verify" in out
    assert "SKIP=check-remote-models git push" in out


def test_the_bytes_of_a_part_being_sent_are_signs_of_life():
    """A store answers an upload part only after its 8 MiB, which a slow uplink takes minutes
    to send: each read botocore makes of the body as it sends it restarts the silence."""
    remote = S3Remote(ADDRESS, QUICK)
    remote.client  # noqa: B018 - (built: it takes the endpoint's clock)
    body = _Sending(b"x" * 100, remote.silence)
    with remote.silence.waiting():
        time.sleep(0.2)
        before = remote.silence.seconds()
        assert body.read(10) == b"x" * 10
        assert remote.silence.seconds() < before
