"""Unit tests of message framing, signing, validation and key files."""

import json
import os
import stat
import time

import pytest

from protocol import (PROTOCOL_VERSION, ProtocolError, check_relative_name, decode_message, encode_message,
                      load_key, load_or_create_key, make_header, sign)

KEY = b"00112233445566778899aabbccddeeff"


def _codes(fn):
    with pytest.raises(ProtocolError) as ei:
        fn()
    return ei.value.code


def test_round_trip_with_buffers():
    header = make_header("submit", msg_id="m1", spec={"job_type": "footage"},
                         files=[{"name": "a.png", "size": 3}, {"name": "d/b.png", "size": 0}])
    frames = encode_message(header, [b"abc", b""], KEY)
    assert len(frames) == 4 and frames[0] == sign(KEY, frames[1:])
    got, bufs = decode_message(frames, KEY, "to_server")
    assert got == header and bufs == [b"abc", b""]
    assert got["v"] == PROTOCOL_VERSION


def test_round_trip_preview_and_progress_nulls():
    h = make_header("progress", job_id="j", stage="reconstruct", step=3, total=10, loss=None, eta_s=1.5,
                    message=None)
    assert decode_message(encode_message(h, [], KEY), KEY, "to_client")[0] == h
    p = make_header("preview", job_id="j", stage="reconstruct")
    assert decode_message(encode_message(p, [b"\x89PNG"], KEY), KEY)[1] == [b"\x89PNG"]


def test_bad_signature_wrong_key():
    frames = encode_message(make_header("ping", msg_id="x"), [], KEY)
    assert _codes(lambda: decode_message(frames, b"other-key")) == "bad_signature"


def test_tampered_buffer_and_header():
    h = make_header("preview", job_id="j", stage="s")
    frames = encode_message(h, [b"png-bytes"], KEY)
    assert _codes(lambda: decode_message(frames[:2] + [b"png-bytez"], KEY)) == "bad_signature"
    assert _codes(lambda: decode_message(frames[:2], KEY)) == "bad_signature"  # dropped buffer
    tampered = frames[1].replace(b'"j"', b'"k"')
    assert _codes(lambda: decode_message([frames[0], tampered, frames[2]], KEY)) == "bad_signature"


def test_malformed_json_and_shape():
    bad = b"{not json"
    assert _codes(lambda: decode_message([sign(KEY, [bad]), bad], KEY)) == "malformed"
    arr = b"[1, 2]"
    assert _codes(lambda: decode_message([sign(KEY, [arr]), arr], KEY)) == "malformed"
    assert _codes(lambda: decode_message([b"only-one-frame"], KEY)) == "malformed"
    notype = json.dumps({"v": 1, "msg_id": "x"}).encode()
    assert _codes(lambda: decode_message([sign(KEY, [notype]), notype], KEY)) == "malformed"


def _raw(header: dict, bufs=()):
    hj = json.dumps(header).encode()
    return [sign(KEY, [hj, *bufs]), hj, *bufs]


def test_unknown_type_and_direction():
    assert _codes(lambda: decode_message(_raw({"v": 2, "sent_at": time.time(), "type": "explode", "msg_id": "x"}), KEY)) == "unknown_type"
    # a server-only type sent to the server is unknown there
    frames = _raw({"v": 2, "type": "pong", "in_reply_to": "x"})
    assert _codes(lambda: decode_message(frames, KEY, "to_server")) == "unknown_type"
    assert decode_message(frames, KEY, "to_client")[0]["type"] == "pong"


def test_missing_field():
    with pytest.raises(ProtocolError) as ei:
        decode_message(_raw({"v": 2, "sent_at": time.time(), "type": "cancel", "msg_id": "x"}), KEY)
    assert ei.value.code == "invalid_field" and "job_id" in ei.value.message
    assert ei.value.header["msg_id"] == "x"  # lets the server set in_reply_to


@pytest.mark.parametrize("header", [
    {"v": 2, "sent_at": time.time(), "type": "cancel", "msg_id": "x", "job_id": 5},
    {"v": 2, "sent_at": time.time(), "type": "fetch_result", "msg_id": "x", "job_id": "j", "index": "0"},
    {"v": 2, "sent_at": time.time(), "type": "fetch_result", "msg_id": "x", "job_id": "j", "index": True},
    {"v": 2, "sent_at": time.time(), "type": "ping", "msg_id": 7},
    {"v": 2, "sent_at": time.time(), "type": "submit", "msg_id": "x", "spec": [], "files": []},
    {"v": 2, "sent_at": time.time(), "type": "submit", "msg_id": "x", "spec": {}, "files": [{"name": "a"}]},
    {"v": 2, "sent_at": time.time(), "type": "ping", "msg_id": "x", "extra": 1},
])
def test_wrong_field_type(header):
    assert _codes(lambda: decode_message(_raw(header), KEY)) == "invalid_field"


def test_buffer_count_and_size_must_match_files():
    h = {"v": 2, "sent_at": time.time(), "type": "submit", "msg_id": "x", "spec": {}, "files": [{"name": "a.png", "size": 3}]}
    assert _codes(lambda: decode_message(_raw(h, [b"abc", b"more"]), KEY)) == "invalid_field"
    assert _codes(lambda: decode_message(_raw(h, [b"ab"]), KEY)) == "invalid_field"
    assert _codes(lambda: decode_message(_raw({"v": 2, "sent_at": time.time(), "type": "ping", "msg_id": "x"}, [b"z"]), KEY)) == "invalid_field"


@pytest.mark.parametrize("name", ["/etc/passwd", "../x.png", "a/../../x", "a//b", "C:/x", "a\\b", "", "."])
def test_unsafe_file_names_refused(name):
    h = {"v": 2, "sent_at": time.time(), "type": "submit", "msg_id": "x", "spec": {}, "files": [{"name": name, "size": 1}]}
    assert _codes(lambda: decode_message(_raw(h, [b"z"]), KEY)) == "invalid_field"


def test_safe_names():
    assert check_relative_name("./train/r_000.png").as_posix() == "train/r_000.png"


def test_version_mismatch():
    assert _codes(lambda: decode_message(_raw({"v": 99, "type": "hello", "msg_id": "x"}), KEY)) == "version_mismatch"
    # errors and welcomes of another version stay readable, so a client can report them
    err = {"v": 99, "type": "error", "in_reply_to": "x", "code": "version_mismatch", "message": "m"}
    assert decode_message(_raw(err), KEY)[0]["code"] == "version_mismatch"


def test_encode_validates_and_refuses_nan():
    with pytest.raises(ProtocolError):
        encode_message(make_header("cancel", msg_id="x"), [], KEY)
    with pytest.raises(ProtocolError):
        encode_message(make_header("progress", job_id="j", stage="s", step=1, total=2, loss=float("nan"),
                                   eta_s=None, message=None), [], KEY)


def test_key_file_created_0600_and_reloaded(tmp_path):
    path = tmp_path / "sub" / "gen4d.key"
    key = load_or_create_key(path)
    assert len(key) == 64 and bytes.fromhex(key.decode())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(path) == key == load_key(path)
    (tmp_path / "bad.key").write_text("not hex")
    os.chmod(tmp_path / "bad.key", 0o600)
    with pytest.raises(ValueError):
        load_key(tmp_path / "bad.key")
    with pytest.raises(FileNotFoundError):
        load_key(tmp_path / "missing.key")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_is_refused(tmp_path, mode):
    # issue 16: a 0644 key file was accepted silently
    path = tmp_path / "gen4d.key"
    key = load_or_create_key(path)
    os.chmod(path, mode)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_key(path)
    os.chmod(path, 0o600)
    assert load_key(path) == key


@pytest.mark.parametrize("text", ["ab", "00" * 31])
def test_a_short_key_is_refused(tmp_path, text):
    # issue 16: a 1-byte key was accepted silently
    path = tmp_path / "gen4d.key"
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    with pytest.raises(ValueError, match="at least 64"):
        load_key(path)
