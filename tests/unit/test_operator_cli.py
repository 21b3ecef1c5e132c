"""`wabaplane operator` options that are refused before anything starts, and the peering priority."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from wabaplane.cli import main, seniority


def test_a_priority_without_peering_is_refused() -> None:
    result = CliRunner().invoke(main, ["operator", "--priority", "5"])
    assert result.exit_code == 2
    assert "--priority only matters with --peering" in result.output


def test_an_older_replica_ranks_above_a_newer_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_795_000_000_000_000_000)
    older = seniority()
    monkeypatch.setattr(time, "time_ns", lambda: 1_795_000_000_000_001_000)  # one microsecond later
    assert seniority() < older
    assert -(2**63) < seniority() < 0, "kopf's priority is stored as a Kubernetes int64"


def test_a_peering_lifetime_too_short_to_renew_is_refused() -> None:
    result = CliRunner().invoke(main, ["operator", "--peering", "wabaplane", "--peering-lifetime", "5"])
    assert result.exit_code == 2
    assert "--peering-lifetime" in result.output
    assert "10<=x<=3600" in result.output
