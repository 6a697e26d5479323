"""Shared fixtures: one per outside service the tests need, and the environment hygiene several files share."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from faults import Postgres, PostgresUnavailable

from experiments import storage as storages

POSTGRES_ENV = "RESEARCH_LOOP_TEST_POSTGRES"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip on a user's machine; in CI a test that would skip is a failure, so CI cannot pass vacuously."""
    if in_ci():
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server to test against ($RESEARCH_LOOP_TEST_POSTGRES, else trust auth on loopback)."""
    url = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    try:
        storages.check(url)
    except storages.StorageUnavailable as exc:
        unavailable(f"no PostgreSQL server ({exc}); start one or set {POSTGRES_ENV}")
    return url


@pytest.fixture
def private_postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL server of this test's own, which it may stop and start (tests/faults.py)."""
    try:
        server = Postgres()
    except PostgresUnavailable as exc:
        unavailable(str(exc))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def no_provider_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No provider, key or config file from the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("RESEARCH_LOOP_") or name.endswith("_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RESEARCH_LOOP_CONFIG", str(tmp_path / "absent.toml"))


@pytest.fixture
def project_env(no_provider_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A user's git project under test: nothing of this machine's (no RESEARCH_LOOP_ or GIT_ variable, key,
    config file or global git identity), reports under tmp_path."""
    for name in list(os.environ):
        if name.startswith("GIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RESEARCH_LOOP_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("HOME", str(tmp_path))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread: the same seed gives the same metric only at the same thread count, and on two cores
    shared with other processes two threads thrash (4x slower, measured)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
