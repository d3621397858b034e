"""Issue 16, "nothing a client sends can stop the server": the attacks of the issue's table
that reached past the error replies, each sent signed (a key holder) to a real server
thread, which must answer every one with a clear error, keep serving and leak no server
path. The fake pipeline of ``test_server_inprocess`` stands in for ``run_job``."""

import json
import sqlite3
import time

import pytest
import zmq

from backend.jobs import JobStore
from backend.pipeline import runner
from protocol import BackendClient, decode_message, encode_message, make_header, sign
from protocol.strict_json import (MAX_HEADER_BYTES, MAX_JSON_DEPTH, JSONRefused, finite_or_none, json_depth,
                                  loads_strict)
from tests.backend.test_server_inprocess import fake_run_job
from tests.helpers.backend_proc import server_thread

KEY = b"test-key-0123456789abcdef-hardening"


@pytest.fixture
def live(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    with server_thread(tmp_path / "data", KEY) as address:
        yield address, tmp_path / "data"


@pytest.fixture
def raw(live):
    """``exchange(header_bytes, *buffers)``: send one signed message, return the decoded reply."""
    address, data_dir = live
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(address)

    def exchange(hj: bytes, *buffers: bytes) -> dict:
        s.send_multipart([sign(KEY, [hj, *buffers]), hj, *buffers])
        assert s.poll(5000), "no reply: the server hung or died"
        reply = decode_message(s.recv_multipart(), KEY, "to_client")[0]
        assert str(data_dir) not in json.dumps(reply), reply  # no server path on the wire
        s.send_multipart(encode_message(make_header("ping", msg_id="alive"), [], KEY))
        assert s.poll(5000), "the server stopped answering pings"
        assert decode_message(s.recv_multipart(), KEY, "to_client")[0]["type"] == "pong"
        return reply

    yield exchange
    s.close()


def _submit(spec_json: str, files=()) -> bytes:
    listed = json.dumps([{"name": n, "size": len(b)} for n, b in files])
    return f'{{"v":2,"sent_at":{time.time()},"type":"submit","msg_id":"s","spec":{spec_json},"files":{listed}}}'.encode()


@pytest.mark.parametrize("depth", [40, 987, 5000])
def test_a_deeply_nested_signed_header_is_refused(raw, depth):
    # before: depth >= 987 killed the server with RecursionError, 21 of 21 tries
    spec = '{"a":' * depth + "1" + "}" * depth
    reply = raw(_submit(spec))
    assert reply["type"] == "error" and reply["code"] == "malformed"
    assert "nested deeper" in reply["message"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused_and_nothing_is_stored(raw, live, number):
    # before: accepted and stored; every later list_jobs reply failed to encode, also after a restart
    reply = raw(_submit(f'{{"job_type":"footage","options":{{"optimization":{{"lr_means":{number}}}}}}}'))
    assert reply["code"] == "malformed" and ("finite" in reply["message"] or "range" in reply["message"])
    address, data_dir = live
    assert not [d for d in (data_dir / "jobs").iterdir() if not d.name.startswith(".")]
    with BackendClient(address, KEY, timeout_s=5) as c:
        assert c.list_jobs() == []


def test_an_oversized_header_is_refused_before_parsing(raw):
    reply = raw(b'{"v":2,"sent_at":%.6f,"type":"ping","msg_id":"' % time.time() + b"x" * MAX_HEADER_BYTES + b'"}')
    assert reply["code"] == "malformed" and "limit" in reply["message"]


@pytest.mark.parametrize("names,text", [
    (["a" * 300 + ".png"], "over 255 bytes"),
    (["b/" * 600 + "c.png"], "the limit is 1024"),
    (["x\ud800.png"], "not valid UTF-8"),
    (["a", "a/b"], "also a folder"),
    (["a/b.png", "./a/b.png"], "appears twice"),
])
def test_upload_names_that_cannot_be_written_get_a_clear_error(raw, names, text):
    # before: internal_error whose text held the server's absolute data path
    files = [(n, b"1") for n in names]
    hj = _submit('{"job_type":"footage"}', files)
    reply = raw(hj, *[b for _, b in files])
    assert reply["code"] == "invalid_field" and text in reply["message"], reply


def test_a_handler_failure_is_an_error_without_its_text(raw, monkeypatch, live):
    def broken(self):
        raise OSError(f"[Errno 5] I/O error: '{live[1]}/jobs/secret'")

    monkeypatch.setattr(JobStore, "list", broken)
    reply = raw(b'{"v":2,"sent_at":%.6f,"type":"list_jobs","msg_id":"l"}' % time.time())
    assert reply["code"] == "internal_error" and reply["in_reply_to"] == "l"
    assert "OSError" in reply["message"] and "ref" in reply["message"] and "secret" not in reply["message"]


def test_a_stored_job_with_nan_is_repaired_on_load_and_listed(tmp_path, monkeypatch):
    # an older version stored NaN (in a spec or as a diverged loss); the list must still encode
    store = JobStore(tmp_path / "data")
    job = store.create({"job_type": "footage", "name": "ok"}, [])["job_id"]
    store.close()
    db = sqlite3.connect(tmp_path / "data" / "jobs.sqlite3")
    state = json.loads(db.execute("SELECT record FROM jobs WHERE job_id=?", (job,)).fetchone()[0])
    state.update(state="failed", progress={"stage": "reconstruct", "step": 1, "total": 2, "loss": float("nan")})
    with db:
        db.execute("UPDATE jobs SET spec=?, record=? WHERE job_id=?",
                   ('{"job_type": "footage", "options": {"x": NaN, "y": [Infinity, 1.5]}}', json.dumps(state), job))
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    with server_thread(tmp_path / "data", KEY) as address:
        with BackendClient(address, KEY, timeout_s=5) as c:
            [listed] = c.list_jobs()
    assert listed["spec"]["options"] == {"x": None, "y": [None, 1.5]}
    assert listed["progress"]["loss"] is None
    spec_text, record = db.execute("SELECT spec, record FROM jobs WHERE job_id=?", (job,)).fetchone()
    assert "NaN" not in spec_text and "NaN" not in record and "Infinity" not in spec_text
    store = JobStore(tmp_path / "data")
    store.set_progress(job, {"stage": "reconstruct", "step": 2, "total": 2, "loss": float("inf")})
    record = db.execute("SELECT record FROM jobs WHERE job_id=?", (job,)).fetchone()[0]
    assert store.get(job)["progress"]["loss"] is None and "Infinity" not in record
    db.close()


def test_strict_json_limits():
    assert loads_strict(b'{"a": [1, 2.5, {"b": null}]}') == {"a": [1, 2.5, {"b": None}]}
    assert json_depth(loads_strict("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)) == MAX_JSON_DEPTH
    for bad in ["[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "[" * 100_000, "NaN", "[1e400]",
                b"\xff", "{", "x" * 10]:
        with pytest.raises(JSONRefused):
            loads_strict(bad)
    with pytest.raises(JSONRefused, match="limit"):
        loads_strict("[1]", max_bytes=2)
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert json_depth(deep) == 10_001  # iterative: no RecursionError
    assert finite_or_none({"a": [float("nan"), 1.0, float("-inf")], "b": "NaN"}) == {"a": [None, 1.0, None], "b": "NaN"}
