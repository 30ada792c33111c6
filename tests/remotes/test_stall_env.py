"""MODEL_FILER_STALL_TIMEOUT: the stall bound for those who cannot pass a Network (CLI, hooks)."""

from __future__ import annotations

import pytest

from model_filer import FAIL_FAST, PATIENT, InvalidNameError, Network
from model_filer.remotes import STALL_ENV, get_remote


@pytest.mark.parametrize("policy", [PATIENT, FAIL_FAST], ids=["PATIENT", "FAIL_FAST"])
def test_the_variable_sets_the_stall_bound_of_the_default_policies(tmp_path, monkeypatch, policy):
    monkeypatch.setenv(STALL_ENV, "300")
    network = get_remote("local", str(tmp_path), policy).network
    assert network == policy._replace(stall_timeout=300.0)  # nothing else changes

    monkeypatch.setenv(STALL_ENV, " 2.5 ")
    assert get_remote("local", str(tmp_path), policy).network.stall_timeout == 2.5


def test_the_default_policy_is_patient_and_follows_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(STALL_ENV, "300")
    assert get_remote("local", str(tmp_path)).network == PATIENT._replace(stall_timeout=300.0)


@pytest.mark.parametrize("value", [None, "", "  "], ids=["unset", "empty", "blank"])
def test_unset_or_empty_keeps_the_policy(tmp_path, monkeypatch, value):
    if value is None:
        monkeypatch.delenv(STALL_ENV, raising=False)
    else:
        monkeypatch.setenv(STALL_ENV, value)
    assert get_remote("local", str(tmp_path), PATIENT).network is PATIENT
    assert get_remote("local", str(tmp_path), FAIL_FAST).network is FAIL_FAST


def test_a_policy_the_caller_chose_is_kept(tmp_path, monkeypatch):
    mine = Network(connect_timeout=1.0, read_timeout=2.0, max_attempts=2, stall_timeout=7.0)
    monkeypatch.setenv(STALL_ENV, "300")
    assert get_remote("local", str(tmp_path), mine).network is mine
    monkeypatch.setenv(STALL_ENV, "abc")  # not used, so not an error
    assert get_remote("local", str(tmp_path), mine).network is mine


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan", "inf", "-inf", "5s"])
@pytest.mark.parametrize("policy", [PATIENT, FAIL_FAST], ids=["PATIENT", "FAIL_FAST"])
def test_a_value_that_is_not_a_positive_number_of_seconds_is_refused(
    tmp_path, monkeypatch, value, policy
):
    monkeypatch.setenv(STALL_ENV, value)
    with pytest.raises(InvalidNameError) as info:
        get_remote("local", str(tmp_path), policy)
    message = str(info.value)
    assert f"${STALL_ENV}={value!r}" in message  # what was wrong
    assert "such as 300, or unset it" in message  # what to type
