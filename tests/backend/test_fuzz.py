"""Issue 16 item 7: what the message fuzzer found, each kept as a regression test: an int too
large for a double in a spec (an ``internal_error``), an unknown option holding only empty
objects (accepted unchecked), and a spec nested so deep that every later ``jobs`` reply was too
deep for clients to read."""

import pytest

from backend.pipeline import runner
from protocol import BackendClient
from protocol.errors import InvalidOptionError, RemoteError
from protocol.job_spec import MAX_SPEC_DEPTH, validate_job_spec
from protocol.strict_json import json_depth
from tests.backend.test_server_inprocess import fake_run_job
from tests.helpers.backend_proc import server_thread

KEY = b"test-key-0123456789abcdef-fuzz"


# -- what the fuzzer found (each was an internal_error or a poisoned job list) ----------------

@pytest.mark.parametrize("spec", [
    {"fps": 10**400}, {"frame_count": 10**400}, {"video_fps": -(10**400)},
    {"options": {"optimization": {"lr_means": 10**400}}},
])
def test_an_int_too_large_for_a_double_is_an_invalid_option(spec):
    # before: OverflowError from math.isfinite -> internal_error
    with pytest.raises(InvalidOptionError):
        validate_job_spec(spec)


def test_an_unknown_option_holding_only_empty_objects_is_refused():
    # before: {"a": {}} flattened to nothing and was accepted unchecked
    with pytest.raises(InvalidOptionError, match="unknown option section"):
        validate_job_spec({"options": {"a": {"b": {}}}})
    validate_job_spec({"options": {"optimization": {}}})  # an empty known section is fine


def test_a_spec_too_deep_for_a_jobs_reply_is_refused(tmp_path, monkeypatch):
    # before: a spec nested 29 deep was stored, and every later list_jobs reply was nested
    # deeper than the client accepts (for every client, also after a restart)
    deep: dict = {}
    for _ in range(MAX_SPEC_DEPTH):
        deep = {"a": deep}
    with pytest.raises(InvalidOptionError, match="nested"):
        validate_job_spec({"multiview": deep})
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    with server_thread(tmp_path / "data", KEY) as address:
        with BackendClient(address, KEY, timeout_s=5) as c:
            with pytest.raises(RemoteError) as err:
                c.submit({"job_type": "footage", "multiview": deep}, {})
            assert err.value.code == "invalid_option"
            ok = deep
            while json_depth(ok) > MAX_SPEC_DEPTH - 1:
                ok = ok["a"]
            c.submit({"job_type": "footage", "name": "ok", "multiview": ok}, {})
            assert len(c.list_jobs()) == 1  # the deepest accepted spec still lists
