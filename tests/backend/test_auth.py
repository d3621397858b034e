"""Authentication that holds (issue 16, item 2-3): signed frame boundaries, replay
protection, routing-id takeover, sessions bound to their user, per-user jobs with an admin
key, CurveZMQ off loopback, and ``spec["models"]`` limited to roles and hub ids.

Each test names the attack row of issue 16 it pins; each failed before this change (the
"before" comments give what the attack got).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from backend.pipeline import runner
from backend.replay import ReplayGuard
from backend.server import ServeRefused, curve_keys_for, is_loopback
from backend.users import add_user
from protocol import (EVENT_TYPES, BackendClient, BackendUnavailable, ProtocolError, RemoteError, decode_message, encode_message,
                      make_header, sign)
from protocol.framing import decode_signed
from tests.backend.test_server_inprocess import fake_run_job, wait_for
from tests.helpers.backend_proc import free_port, server_thread

REPO = Path(__file__).resolve().parents[2]
KEY = b"0123456789abcdef" * 4


@pytest.fixture
def studio(tmp_path, monkeypatch):
    """A loopback server (fake pipeline) with users alice, bob and admin carol; yields
    ``(address, data_dir, credentials)`` with credentials by user name."""
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    data = tmp_path / "data"
    creds = {name: add_user(data, name, admin=(name == "carol")) for name in ("alice", "bob", "carol")}
    with server_thread(data, KEY) as address:
        yield address, data, creds


@pytest.fixture
def ctx():
    """A ZeroMQ context for raw sockets, destroyed (LINGER 0) after the test."""
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def _client(address, cred, **kw) -> BackendClient:
    return BackendClient(address, cred["key"].encode(), user=cred["user"], timeout_s=kw.pop("timeout_s", 5), **kw)


def _dealer(ctx, address, identity=None):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if identity:
        s.setsockopt(zmq.ROUTING_ID, identity)
    s.connect(address)
    return s


def _exchange(sock, frames, key=KEY, timeout_ms=5000):
    """Send, and return the reply (job events pushed meanwhile are skipped)."""
    sock.send_multipart(frames)
    while True:
        assert sock.poll(timeout_ms), "no reply"
        header = decode_message(sock.recv_multipart(), key, "to_client")[0]
        if header["type"] not in EVENT_TYPES or header.get("in_reply_to"):
            return header


# -- frame boundaries ---------------------------------------------------------------------

def test_the_signature_covers_frame_boundaries():
    hj = b'{"v":2}'
    assert sign(KEY, [hj]) != sign(KEY, [hj, b""])  # before: the same signature
    assert sign(KEY, [b"ab", b"c"]) != sign(KEY, [b"a", b"bc"])
    assert sign(KEY, [hj], "alice") != sign(KEY, [hj])  # the user is signed too
    frames = encode_message(make_header("ping", msg_id="p"), [], KEY, "to_server")
    with pytest.raises(ProtocolError) as e:
        decode_message([*frames, b""], KEY, "to_server")
    assert e.value.code == "bad_signature"  # before: the signature passed, only the schema refused it


def test_an_unknown_user_is_refused_like_a_wrong_key():
    frames = encode_message(make_header("ping", msg_id="p"), [], KEY, "to_server", user="mallory")
    with pytest.raises(ProtocolError) as unknown:
        decode_signed(frames, lambda u: KEY if u == "" else None, "to_server")
    frames = encode_message(make_header("ping", msg_id="p"), [], b"f" * 64, "to_server")
    with pytest.raises(ProtocolError) as wrong:
        decode_signed(frames, lambda u: KEY if u == "" else None, "to_server")
    assert unknown.value.code == wrong.value.code == "bad_signature"
    assert unknown.value.message == wrong.value.message  # no oracle for user names


# -- replays ------------------------------------------------------------------------------

def test_replay_guard_window_and_bounded_history():
    now = [1000.0]
    guard = ReplayGuard(window_s=60, max_history=3, clock=lambda: now[0])
    guard.check(b"a", 1000.0)
    with pytest.raises(ProtocolError, match="already received") as e:
        guard.check(b"a", 1000.0)
    assert e.value.code == "replayed"
    with pytest.raises(ProtocolError) as e:
        guard.check(b"old", 900.0)
    assert e.value.code == "stale_message" and "clock" in e.value.message
    for i, t in enumerate((1001.0, 1002.0, 1003.0)):
        guard.check(b"x%d" % i, t)
    assert len(guard) == 3  # bounded: "a" (the oldest) was forgotten ...
    with pytest.raises(ProtocolError) as e:
        guard.check(b"a", 1000.0)
    assert e.value.code == "replayed"  # ... and still cannot come back (sent before the floor)
    now[0] = 1100.0
    guard.check(b"y", 1100.0)
    assert len(guard) == 1  # entries older than the window are dropped


def test_a_captured_submit_replayed_makes_no_second_job(studio, ctx):
    address, data, creds = studio
    s = _dealer(ctx, address)
    frames = encode_message(make_header("submit", msg_id="s1", spec={"name": "ok"}, files=[]), [], KEY)
    first = _exchange(s, frames)
    assert first["type"] == "queued"
    for _ in range(4):  # before: 4 replays of one submit made 4 jobs
        replay = _exchange(s, frames)
        assert replay["type"] == "error" and replay["code"] == "replayed"
    stale = encode_message(make_header("ping", msg_id="p", sent_at=time.time() - 3600), [], KEY)
    assert _exchange(s, stale)["code"] == "stale_message"
    other = _dealer(ctx, address)  # a replay from another connection is refused too
    assert _exchange(other, frames)["code"] == "replayed"
    jobs = _exchange(s, encode_message(make_header("list_jobs", msg_id="l"), [], KEY))["jobs"]
    assert len(jobs) == 1


def test_a_submit_replayed_after_a_restart_is_still_refused(tmp_path, monkeypatch, ctx):
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    data = tmp_path / "data"
    frames = encode_message(make_header("submit", msg_id="s1", spec={"name": "ok"}, files=[]), [], KEY)
    with server_thread(data, KEY) as address:
        assert _exchange(_dealer(ctx, address), frames)["type"] == "queued"
    with server_thread(data, KEY) as address:  # the digest history in memory is gone; the store remembers
        s = _dealer(ctx, address)
        assert _exchange(s, frames)["code"] == "replayed"
        jobs = _exchange(s, encode_message(make_header("list_jobs", msg_id="l"), [], KEY))["jobs"]
        assert len(jobs) == 1 and "request_digest" not in jobs[0]


# -- routing-id takeover and session binding ----------------------------------------------

def test_a_peer_without_the_key_cannot_take_over_a_routing_id(studio, ctx):
    address, data, creds = studio
    victim = _dealer(ctx, address, b"victim-id")
    queued = _exchange(victim, encode_message(make_header("submit", msg_id="s", spec={"name": "slow"}, files=[]),
                                              [], KEY))
    job_id = queued["job_id"]
    attacker = _dealer(ctx, address, b"victim-id")
    time.sleep(0.3)
    # before: the attacker received the victim's progress and previews, the victim's ping timed out
    pong = _exchange(victim, encode_message(make_header("ping", msg_id="p2"), [], KEY))
    assert pong["type"] == "pong"
    got_progress = False
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if victim.poll(100):
            got_progress |= decode_message(victim.recv_multipart(), KEY, "to_client")[0]["type"] == "progress"
    assert got_progress, "the victim no longer gets its job's events"
    assert attacker.poll(500) == 0, "the peer with the stolen routing id received something"
    _exchange(victim, encode_message(make_header("cancel", msg_id="c", job_id=job_id), [], KEY))


def test_a_connection_belongs_to_the_user_who_first_signed_on_it(studio, ctx):
    address, data, creds = studio
    s = _dealer(ctx, address)
    alice_key, bob_key = creds["alice"]["key"].encode(), creds["bob"]["key"].encode()
    hello = encode_message(make_header("hello", msg_id="h"), [], alice_key, user="alice")
    assert _exchange(s, hello, alice_key)["type"] == "welcome"
    as_bob = encode_message(make_header("list_jobs", msg_id="l"), [], bob_key, user="bob")
    err = _exchange(s, as_bob, alice_key)
    assert err["code"] == "forbidden"


# -- per-user jobs ------------------------------------------------------------------------

def test_each_user_sees_and_manages_only_their_jobs_and_an_admin_all(studio):
    address, data, creds = studio
    with _client(address, creds["alice"]) as alice, _client(address, creds["bob"]) as bob, \
            _client(address, creds["carol"]) as carol, BackendClient(address, KEY, timeout_s=5) as own:
        a_job = alice.submit({"name": "ok"}, {"a.txt": b"a"})
        b_job = bob.submit({"name": "slow"}, {"b.txt": b"b"})
        wait_for(alice, a_job, {"completed"})
        # before: any key holder listed every job and spec, and fetched or cancelled anyone's job
        assert [j["job_id"] for j in alice.list_jobs()] == [a_job]
        assert [j["job_id"] for j in bob.list_jobs()] == [b_job]
        assert all(j["owner"] == "alice" for j in alice.list_jobs())
        for attempt in (lambda: bob.watch(a_job), lambda: bob.cancel(a_job),
                        lambda: bob.fetch_result(a_job, data.parent / "stolen"), lambda: alice.cancel(b_job)):
            with pytest.raises(RemoteError) as e:
                attempt()
            assert e.value.code == "unknown_job"  # as if it did not exist
        assert not (data.parent / "stolen" / "manifest.json").exists()
        for admin in (carol, own):  # an admin user, and the backend's own key
            assert {j["job_id"] for j in admin.list_jobs()} == {a_job, b_job}
        carol.cancel(b_job)
        wait_for(bob, b_job, {"cancelled"})
        own.fetch_result(a_job, data.parent / "by_admin")
        assert (data.parent / "by_admin" / "manifest.json").is_file()


# -- spec["models"] -----------------------------------------------------------------------

@pytest.mark.parametrize("source", ["/etc", "~/.ssh", "~", "../models", "./x/y", "a/b/c", "C:/models", "/"])
def test_submitted_models_name_hub_ids_only(studio, source, tmp_path):
    address, data, creds = studio
    with BackendClient(address, KEY, timeout_s=5) as c:
        with pytest.raises(RemoteError) as e:
            c.submit({"name": "ok", "models": {"multiview": source}}, {})
        assert e.value.code == "invalid_option"
        # before: the error text told whether the folder exists (an oracle); now one answer for all
        assert "cannot name a folder on the backend" in e.value.message
        with pytest.raises(RemoteError) as missing:
            c.submit({"name": "ok", "models": {"multiview": "/no/such/folder"}}, {})
        assert e.value.message == missing.value.message  # nothing about the server's disk
        with pytest.raises(RemoteError, match="unknown model role"):
            c.submit({"name": "ok", "models": {"/etc/passwd": "a/b"}}, {})
        assert c.submit({"name": "ok", "models": {"multiview": "sudo-ai/zero123plus-v1.2"}}, {})


def test_an_existing_relative_folder_does_not_turn_a_hub_id_into_a_path(tmp_path, monkeypatch):
    from backend.models.registry import resolve

    (tmp_path / "owner" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve("multiview", {"multiview": "owner/name"}).kind == "hub"  # before: read as the local folder
    assert resolve("multiview", {"multiview": "./owner/name"}).kind == "local"


# -- CurveZMQ -----------------------------------------------------------------------------

def test_is_loopback():
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://localhost:1") and is_loopback("ipc:///x")
    assert is_loopback("tcp://[::1]:5555")
    assert not is_loopback("tcp://*:5555") and not is_loopback("tcp://0.0.0.0:5555")
    assert not is_loopback("tcp://192.168.1.5:5555")


def test_off_loopback_without_curve_keys_the_server_refuses_to_start(tmp_path):
    with pytest.raises(ServeRefused, match="python -m backend users add"):
        curve_keys_for("tcp://0.0.0.0:5555", tmp_path)
    with pytest.raises(ServeRefused, match="without CurveZMQ"):
        curve_keys_for("tcp://0.0.0.0:5555", tmp_path, curve=False)
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "backend", "serve", "--address", f"tcp://0.0.0.0:{port}",
                          "--data-dir", str(tmp_path / "d")], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2
    assert "needs CurveZMQ keys" in out.stderr and "users add" in out.stderr and "Traceback" not in out.stderr
    add_user(tmp_path / "d", "alice")
    public, secret = curve_keys_for("tcp://0.0.0.0:5555", tmp_path / "d")
    assert len(public) == len(secret) == 40


def test_a_client_connects_over_curve_on_loopback(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    data = tmp_path / "data"
    alice, bob = add_user(data, "alice"), add_user(data, "bob")
    with server_thread(data, KEY, curve=True, ping_credentials=Path(alice["path"])) as address:
        with BackendClient.from_credentials(address, alice["path"], timeout_s=5) as c:
            assert c.hello()["version"] >= 2
            job = c.submit({"name": "ok"}, {"a.txt": b"a"})
            wait_for(c, job, {"completed"})
            assert [j["job_id"] for j in c.list_jobs()] == [job]
        # plain TCP, or a CURVE key the server does not know: never connected, no answer
        for client in (BackendClient(address, alice["key"].encode(), user="alice", timeout_s=1.5),
                       BackendClient(address, alice["key"].encode(), user="alice", timeout_s=1.5,
                                     curve=(*zmq.curve_keypair(), alice["server_public"].encode()))):
            with client, pytest.raises(BackendUnavailable):
                client.ping()
        # bob's CURVE key with alice's HMAC key: the message's user must be the key's user
        with BackendClient(address, alice["key"].encode(), user="alice", timeout_s=5,
                           curve=(bob["curve_public"].encode(), bob["curve_secret"].encode(),
                                  bob["server_public"].encode())) as c:
            with pytest.raises(RemoteError) as e:
                c.ping()
            assert e.value.code == "forbidden"
        with BackendClient.from_credentials(address, bob["path"], timeout_s=5) as c:
            assert c.list_jobs() == []  # and bob does not see alice's job


def test_credentials_files_are_private_and_checked(tmp_path):
    from protocol import load_credentials

    cred = add_user(tmp_path, "dave", credentials_path=tmp_path / "dave.json")
    assert load_credentials(cred["path"])["user"] == "dave"
    Path(cred["path"]).chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_credentials(cred["path"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "gen4d-credentials/1", "user": "x", "key": "zz"}))
    bad.chmod(0o600)
    with pytest.raises(ValueError, match="hex"):
        load_credentials(bad)


def test_a_forgotten_session_takes_its_subscriptions_along(tmp_path):
    """Events are signed with the session user's key: a subscriber whose session was
    forgotten (idle for an hour) is dropped, not sent events it could not read."""
    from backend.server import SESSION_IDLE_S, Server

    server = Server(tmp_path / "data", KEY)
    server.sessions[b"old"] = {"user": "alice", "last_seen": time.time() - SESSION_IDLE_S - 1}
    server.sessions[b"new"] = {"user": "bob", "last_seen": time.time()}
    server.subscribers["job"] |= {b"old", b"new"}
    server.forget_idle_sessions()
    assert set(server.sessions) == {b"new"} and server.subscribers["job"] == {b"new"}
