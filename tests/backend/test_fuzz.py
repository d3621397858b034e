"""Issue 16 item 7: a seeded, bounded fuzz of the server. A few thousand messages from
:mod:`tests.helpers.fuzz_messages` (random frames, bad signatures, malformed and signed
headers, wrong field types, bad uploads and specs, random job ids, very many buffers) go to
a real server thread running the fake pipeline of ``test_server_inprocess``. After every
batch a valid ``ping`` through a fresh client must be answered within 5 s and the server
thread must be alive; every invalid message must get an ``error`` reply, and no error may
hold a traceback or the server's data path. The long run is ``benchmarks/fuzz_server.py``.
"""

import json
import logging
import threading

import pytest

from backend.pipeline import runner
from protocol import BackendClient, decode_message
from protocol.errors import InvalidOptionError, RemoteError
from protocol.job_spec import MAX_SPEC_DEPTH, validate_job_spec
from protocol.strict_json import json_depth
from tests.backend.test_server_inprocess import fake_run_job
from tests.helpers.backend_proc import server_thread
from tests.helpers.fuzz_messages import FuzzDriver, FuzzGenerator, replay, reproducer

KEY = b"test-key-0123456789abcdef-fuzz"
MESSAGES = 5000
BATCH = 200


class _Count(logging.Handler):
    """Counts log records at ERROR or above (a handler's unexpected exception is logged there)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(record.getMessage())


@pytest.fixture
def quiet_server_log():
    """The server logs a warning per refused message; keep them out of the captured output."""
    log = logging.getLogger("gen4d")
    counter = _Count()
    old = log.level
    log.setLevel(logging.ERROR)
    log.addHandler(counter)
    yield counter
    log.removeHandler(counter)
    log.setLevel(old)


@pytest.mark.parametrize("seed", [16])
def test_fuzzed_messages_never_stop_the_server(tmp_path, monkeypatch, quiet_server_log, seed):
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    data_dir = tmp_path / "data"
    before = set(threading.enumerate())
    with server_thread(data_dir, KEY) as address:
        server_threads = [t for t in threading.enumerate() if t not in before]
        assert server_threads, "the server thread was not found"

        def threads_alive(_stats):
            dead = [t.name for t in server_threads if not t.is_alive()]
            return f"server thread(s) died: {dead}" if dead else None

        driver = FuzzDriver(address, KEY, forbidden=[str(data_dir), str(data_dir.resolve())])
        try:
            stats = driver.run(FuzzGenerator(KEY, seed=seed, valid_submit_every=150), MESSAGES, batch=BATCH,
                               after_batch=threads_alive)
        finally:
            driver.close()
    summary = stats.as_dict()
    assert not stats.findings, summary
    assert stats.sent == MESSAGES and stats.ping_failures == 0 and stats.no_reply == 0
    assert stats.wrong_success == 0 and stats.leaks == 0 and stats.undecodable_replies == 0
    # every message got exactly one reply, and most of them are refusals
    assert sum(stats.replies.values()) == MESSAGES
    errors = sum(n for k, n in stats.replies.items() if k.startswith("error:"))
    assert errors > MESSAGES * 0.8, summary
    assert "error:internal_error" not in stats.replies, summary
    # the families all ran, and the on-purpose valid requests were served
    assert len(stats.families) >= 20, summary
    assert stats.replies["pong"] > 0 and stats.replies["queued"] > 0, summary
    assert not quiet_server_log.records, quiet_server_log.records[:5]


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


def test_a_recorded_batch_replays(tmp_path, monkeypatch, quiet_server_log):
    # the benchmark's reproducer file: recorded messages sent again get the same kind of reply
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    with server_thread(tmp_path / "data", KEY) as address:
        driver = FuzzDriver(address, KEY, keep=30)
        try:
            driver.run(FuzzGenerator(KEY, seed=3, valid_submit_every=0), 30, batch=30)
            records = reproducer(driver.recent)
        finally:
            driver.close()
        replies = replay(address, json.loads(json.dumps(records)))
    assert len(replies) == 30 and all(r is not None for r in replies)
    types = [decode_message(r, KEY, "to_client")[0]["type"] for r in replies]
    assert all(t == "error" for t, rec in zip(types, records) if rec["expect"] == "error")
