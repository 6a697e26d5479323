"""Shared fixtures. Keep this small: one fixture per outside service the tests need."""

from __future__ import annotations

import os
from collections.abc import Iterator
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
