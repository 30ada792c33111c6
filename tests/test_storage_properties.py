"""Property tests of chunked storage (issue 21): random byte strings through push, gc and pull.

Hypothesis draws a few models per example: byte strings of random sizes (empty to ~2 MiB)
made of fresh random runs, runs of a pool that every model of the example shares (what a
retrained network shares with its last version), and compressible runs. Each example dumps
them in a fresh folder of one git repository, pushes them all, drops some before they are
ever committed (garbage for gc), commits, runs gc with no grace period, and pulls the kept
ones on another machine, one by one (each pull can take chunks from the models pulled before
it). Then every kept model loads with its bytes, every ``synced`` entry's map and packs
are on the remote, and what the remote holds is whole. Chunking thresholds are lowered so that
these sizes cut into dozens of chunks. Every remote type runs the same examples (derandomized:
the same on every run), 15 each.
"""

from __future__ import annotations

import os
import random
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from model_filer.git import gc
from tests.remotes.test_contract import TARGETS, Target
from tests.support.chunking import check_remote_whole, check_synced_present, small_chunks
from tests.support.gitrepo import commit

KiB = 1024
POOL = 2048 * KiB  # the runs the models of one example share come from this many bytes


def lengths(top: int) -> st.SearchStrategy[int]:
    """Lengths on a log scale from about 2**``top`` down to 0. Hypothesis starts from its
    simplest values: these are the long runs, so that few examples reach chunked models."""
    return st.builds(
        lambda b, j: (1 << (top - b)) - 1 + j, st.integers(0, top), st.integers(0, 999)
    )


# One run: ("fresh", seed, length) | ("shared", offset, length) | ("fill", byte, length).
run = st.one_of(
    st.tuples(st.just("fresh"), st.integers(0, 2**32 - 1), lengths(19)),
    st.tuples(st.just("shared"), st.integers(0, POOL - 1), lengths(20)),
    st.tuples(st.just("fill"), st.integers(0, 255), lengths(17)),
)
model = st.lists(run, min_size=1, max_size=4)
example = st.tuples(
    st.integers(0, 2**32 - 1),  # the pool's seed
    st.lists(st.tuples(model, st.booleans()), min_size=1, max_size=4),  # (runs, kept?)
)


def build(runs: list[tuple[str, int, int]], pool: bytes) -> bytes:
    """The bytes a model's runs describe."""
    parts = []
    for kind, arg, length in runs:
        if kind == "fresh":
            parts.append(random.Random(arg).randbytes(length))  # noqa: S311 - test data
        elif kind == "shared":
            parts.append(pool[arg : arg + length])
        else:
            parts.append(bytes([arg]) * length)
    return b"".join(parts)


@pytest.fixture(params=list(TARGETS))
def target(request: pytest.FixtureRequest) -> Target:
    return TARGETS[request.param](request)


@pytest.fixture
def chunky(monkeypatch: pytest.MonkeyPatch) -> None:
    small_chunks(monkeypatch)


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: minutes of MiB-sized pushes
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one remote and one repo for all examples
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(drawn=example)
def test_random_models_survive_push_gc_and_pull(
    drawn: tuple[int, list[tuple[list[tuple[str, int, int]], bool]]],
    tmp_path: Path,
    target: Target,
    repo: Path,
    chunky: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed, drawn_models = drawn
    pool = random.Random(seed).randbytes(POOL)  # noqa: S311 - test data
    models = {f"m{i}": build(runs, pool) for i, (runs, _) in enumerate(drawn_models)}
    kept = [f"m{i}" for i, (_, keep) in enumerate(drawn_models) if keep]

    folder = os.urandom(6).hex()  # a fresh folder of the one repo, and stores, each example
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", str(tmp_path / f"store-{folder}"))
    producer = target.filer(repo / folder)
    for name, data in models.items():
        producer.dump(data, name)
    assert sorted(producer.push_all()) == sorted(models)
    for name in models:
        if name not in kept:  # pushed, never committed: gc's to collect
            producer.remove(name)
    commit(repo, f"models of {folder}")

    found = gc.plan(producer, grace=timedelta(0))
    gc.collect(producer, found.candidates)

    remote = target.remote()
    check_synced_present(remote, producer.registry().entries)
    check_remote_whole(remote)

    consumer = tmp_path / f"consumer-{folder}"  # another machine: a clone, an empty store
    consumer.mkdir()
    shutil.copy(producer.registry_path, consumer)
    monkeypatch.setenv("MODEL_FILER_CACHE_DIR", str(tmp_path / f"consumer-store-{folder}"))
    mate = target.filer(consumer)
    for name in kept:
        assert mate.load(name) == models[name]
    assert {e.name for e in mate.list_files()} == set(kept)
