"""Seeded message fuzzer for the backend server: one generator and one driver, shared by
``tests/backend/test_fuzz.py`` (a few thousand messages against a server thread) and
``benchmarks/fuzz_server.py`` (100,000 against a backend subprocess).

Every *valid* message is built with :func:`protocol.make_header` and
:func:`protocol.encode_message`, and every signed-but-malformed one starts from a
``make_header`` header and is re-signed with :func:`protocol.sign`, so the fuzzer follows
the wire format (signature scheme, replay-protection fields) wherever ``protocol`` takes it.

:class:`FuzzGenerator` yields :class:`FuzzMessage` objects lazily (each one is made just
before it is sent, so time-bound header fields stay fresh); each says whether the server
must answer it with an ``error`` (``expect="error"``) or may answer anything
(``expect="any"``: the well-formed requests sent on purpose). :class:`FuzzDriver` sends
them one at a time over a raw DEALER socket, waits for the reply, checks it (an ``error``
for every invalid message; no ``Traceback`` and no server data path in any error), and
after every batch calls a liveness check (a valid ``ping`` through a fresh
:class:`protocol.BackendClient`, plus whatever the caller adds: thread or process alive,
RSS).
"""

from __future__ import annotations

import base64
import json
import random
import string
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import zmq

from protocol import PROTOCOL_VERSION, BackendClient, decode_message, encode_message, make_header, new_msg_id, sign
from protocol.errors import ProtocolError
from protocol.job_spec import validate_job_spec
from protocol.messages import CLIENT_TYPES, EVENT_TYPES, SCHEMAS, SERVER_TYPES
from protocol.strict_json import MAX_HEADER_BYTES, MAX_JSON_DEPTH

#: message types the server answers with something other than ``error`` on success.
SUCCESS_TYPES = frozenset(SERVER_TYPES) - {"error"}


@dataclass
class FuzzMessage:
    """One fuzz message.

    Attributes:
        family: the mutation family that made it (for the per-family counts).
        frames: ``[signature, header, *buffers]`` as sent by a DEALER socket.
        expect: ``"error"`` (invalid: only an ``error`` reply is correct) or ``"any"``
            (a well-formed request sent on purpose).
        msg_ids: the ``msg_id`` strings in the header, if any (to match the reply).
    """

    family: str
    frames: list
    expect: str = "error"
    msg_ids: tuple = ()


def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode("utf-8")


def _rand_text(rng: random.Random, lo: int = 0, hi: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits + "._-/ \\\x00é漢\U0001F600"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def _rand_bytes(rng: random.Random, lo: int = 0, hi: int = 200) -> bytes:
    return rng.randbytes(rng.randint(lo, hi))


#: values of every JSON type, used to put a wrong type into a schema field.
def _values_by_kind(rng: random.Random) -> dict[str, object]:
    return {
        "null": None, "bool": rng.choice([True, False]), "int": rng.choice([0, -1, 7, 2**63, -(2**70)]),
        "float": rng.choice([0.5, -1e300, 1e-300, 3.0]), "str": rng.choice(["", "x", "0" * 40, "é\U0001F600"]),
        "list": rng.choice([[], [1, "a"], [{"name": "a", "size": 1}]]),
        "dict": rng.choice([{}, {"a": 1}, {"name": "a", "size": 1}]),
    }


def _accepted_kinds(tname: str) -> set[str]:
    """JSON value kinds (keys of :func:`_values_by_kind`) a schema type name accepts."""
    base = tname.rstrip("?")
    kinds = {"str": {"str"}, "int": {"int"}, "float": {"int", "float"}, "bool": {"bool"}, "dict": {"dict"},
             "list": {"list"}, "str_list": set(), "files": set()}[base]
    if tname.endswith("?"):
        kinds = kinds | {"null"}
    return kinds


#: file names the server must refuse (each alone in a ``submit``).
BAD_NAMES = ["..", "../x.png", "a/../../etc/passwd", "/etc/passwd", "/", "a\x00b.png", "x\ud800.png", "\udcff",
             "a" * 300 + ".png", "b/" * 600 + "c.png", "C:evil.png", "c:/x", "a\\b.png", "", ".", "./.", "a//b",
             "a/", "x/" + "é" * 200]


class FuzzGenerator:
    """A seeded, lazy stream of fuzz messages for one server key.

    Args:
        key: the server's HMAC key (so signed-but-malformed messages pass the signature).
        seed: random seed; the same seed gives the same sequence of families and mutations
            (message ids and time-bound fields differ).
        valid_submit_every: about one message in this many is a well-formed ``submit`` of a
            tiny job (``name`` ``"ok"``, no files); 0 sends none.

    Attributes:
        known_jobs: job ids the server reported for this generator's valid submits (the
            driver adds them from ``queued`` replies); used by ``watch`` / ``cancel`` /
            ``fetch_result``.
    """

    def __init__(self, key: bytes, seed: int = 0, valid_submit_every: int = 200):
        self.key = bytes(key)
        self.rng = random.Random(seed)
        self.valid_submit_every = valid_submit_every
        self.known_jobs: list[str] = []
        self.families: list[tuple[str, Callable[[], FuzzMessage], float]] = [
            ("random_frames", self.random_frames, 4),
            ("frame_count", self.frame_count, 3),
            ("bad_signature", self.bad_signature, 4),
            ("user_signature", self.user_signature, 3),
            ("unsigned_json", self.unsigned_json, 2),
            ("non_object", self.non_object, 3),
            ("deep_nesting", self.deep_nesting, 2),
            ("huge_numbers", self.huge_numbers, 3),
            ("non_finite", self.non_finite, 3),
            ("duplicate_keys", self.duplicate_keys, 3),
            ("wrong_field_type", self.wrong_field_type, 6),
            ("missing_field", self.missing_field, 3),
            ("unknown_type", self.unknown_type, 3),
            ("extra_field", self.extra_field, 3),
            ("wrong_version", self.wrong_version, 3),
            ("submit_mismatch", self.submit_mismatch, 4),
            ("bad_file_name", self.bad_file_name, 4),
            ("bad_spec", self.bad_spec, 6),
            ("job_requests", self.job_requests, 6),
            ("many_buffers", self.many_buffers, 0.5),
            ("oversized_header", self.oversized_header, 0.2),
            ("not_utf8", self.not_utf8, 1),
            ("valid", self.valid, 4),
        ]
        self._weights = [w for _, _, w in self.families]

    def __iter__(self) -> Iterator[FuzzMessage]:
        while True:
            yield self.next()

    def next(self) -> FuzzMessage:
        """Return the next message (one family, chosen by weight)."""
        if self.valid_submit_every and self.rng.randrange(self.valid_submit_every) == 0:
            return self.valid_submit()
        _, make, _ = self.rng.choices(self.families, weights=self._weights)[0]
        return make()

    # -- building blocks ---------------------------------------------------------------

    def _signed(self, family: str, hjson: bytes, bufs=(), expect: str = "error", msg_ids=()) -> FuzzMessage:
        bufs = list(bufs)
        return FuzzMessage(family, [sign(self.key, [hjson, *bufs]), hjson, *bufs], expect, tuple(msg_ids))

    def _valid(self, family: str, mtype: str, bufs=(), expect: str = "any", **fields) -> FuzzMessage:
        msg_id = new_msg_id()
        frames = encode_message(make_header(mtype, msg_id=msg_id, **fields), list(bufs), self.key, "to_server")
        return FuzzMessage(family, frames, expect, (msg_id,))

    def _fields_for(self, mtype: str) -> dict:
        """Valid fields of a client request type (besides ``msg_id``)."""
        rng = self.rng
        if mtype == "hello":
            return {"client": "fuzz"} if rng.random() < 0.5 else {}
        if mtype == "submit":
            return {"spec": {"job_type": "footage", "name": "ok"}, "files": []}
        if mtype in ("cancel", "watch"):
            return {"job_id": self._job_id()}
        if mtype == "fetch_result":
            return {"job_id": self._job_id(), "index": rng.randint(-2, 5)}
        return {}

    def _header(self, mtype: Optional[str] = None) -> tuple[dict, str]:
        """A well-formed request header (``make_header``) of a random or given type, and its msg_id."""
        mtype = mtype or self.rng.choice(sorted(CLIENT_TYPES))
        msg_id = new_msg_id()
        return make_header(mtype, msg_id=msg_id, **self._fields_for(mtype)), msg_id

    def _job_id(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            return rng.randbytes(16).hex()
        if r < 0.45 and self.known_jobs:
            return rng.choice(self.known_jobs)
        return rng.choice(["", "x", "../" * 5, "0" * 31, "G" * 32, "A" * 32, "\x00" * 32, "é" * 32,
                           rng.randbytes(16).hex() + "\n", "a" * 5000, _rand_text(rng, 1, 64)])

    # -- families ----------------------------------------------------------------------

    def random_frames(self) -> FuzzMessage:
        """1-6 frames of random bytes (the signature will not match)."""
        frames = [_rand_bytes(self.rng) for _ in range(self.rng.randint(1, 6))]
        return FuzzMessage("random_frames", frames)

    def frame_count(self) -> FuzzMessage:
        """Too few frames, or a request signed with buffers it must not have / lacking some."""
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            return FuzzMessage("frame_count", [rng.choice([b"", sign(self.key, [b""]), b"{}"])])
        if r < 0.65:
            mtype = rng.choice(sorted(CLIENT_TYPES - {"submit"}))
            header, msg_id = self._header(mtype)
            bufs = [_rand_bytes(rng, 0, 16) for _ in range(rng.randint(1, 4))]
            return self._signed("frame_count", _json(header), bufs, msg_ids=(msg_id,))
        header, msg_id = self._header("submit")
        header["files"] = [{"name": f"f{i}.bin", "size": 1} for i in range(rng.randint(1, 4))]
        n = len(header["files"]) + rng.choice([-1, 1, 2]) if rng.random() < 0.8 else 0
        bufs = [b"x"] * max(0, n)
        return self._signed("frame_count", _json(header), bufs, msg_ids=(msg_id,))

    def bad_signature(self) -> FuzzMessage:
        """A well-formed request whose signature is wrong, empty, garbage or another key's."""
        rng = self.rng
        header, msg_id = self._header()
        hjson = _json(header)
        good = sign(self.key, [hjson])
        choice = rng.randrange(7)
        sig = [b"", b"0" * len(good), good.upper() if good.upper() != good else good[:-1] + b"g",
               good[:-1] + bytes([good[-1] ^ 1]), _rand_bytes(rng, 1, 100), sign(self.key + b"x", [hjson]),
               good + b"0"][choice]
        return FuzzMessage("bad_signature", [sig, hjson], "error", (msg_id,))

    def user_signature(self) -> FuzzMessage:
        """A signature frame naming a user: unknown names, invalid names, the right digest
        under the wrong name, a replayed pair of frames, a stale ``sent_at``."""
        rng = self.rng
        header, msg_id = self._header()
        choice = rng.randrange(6)
        if choice == 5:  # a request from long ago, correctly signed with the server's key
            header["sent_at"] = rng.choice([0.0, 1e9, header["sent_at"] - 3600, header["sent_at"] + 3600])
            hjson = _json(header)
            return FuzzMessage("user_signature", [sign(self.key, [hjson]), hjson], "error", (msg_id,))
        hjson = _json(header)
        name = rng.choice([b"alice", b"nobody", b"Admin", b"a" * 65, b"", b"../x", b"\xff\xfe", b"a:b",
                           _rand_bytes(rng, 1, 30)])
        digest = rng.choice([sign(self.key, [hjson]), sign(self.key, [hjson], "alice"), b"0" * 64,
                             _rand_bytes(rng, 0, 70)])
        return FuzzMessage("user_signature", [name + b":" + digest, hjson], "error", (msg_id,))

    def unsigned_json(self) -> FuzzMessage:
        """A (possibly malformed) JSON header with no valid signature."""
        rng = self.rng
        header, msg_id = self._header()
        hjson = rng.choice([_json(header), b"[]", b"NaN", b"{" * 50, b'{"v":1', _rand_bytes(rng, 1, 50)])
        return FuzzMessage("unsigned_json", [rng.choice([b"", b"sig", b"0" * 64]), hjson], "error", (msg_id,))

    def non_object(self) -> FuzzMessage:
        """Signed JSON headers that are not objects (or not JSON)."""
        rng = self.rng
        header, _ = self._header()
        hjson = rng.choice([b"[]", b"[1,2]", b"1", b"-0", b'"ping"', b"null", b"true", b"", b" ", b"{}",
                            b'{"v":1}', b'{"type":"ping"}', _json([header]), b"{'v':1}", b'{"v":1,}',
                            _json(header)[:-1], _json(header) + b"x", b"\xef\xbb\xbf" + _json(header)])
        return self._signed("non_object", hjson)

    def deep_nesting(self) -> FuzzMessage:
        """A header field nested deeper than :data:`~protocol.strict_json.MAX_JSON_DEPTH`."""
        rng = self.rng
        header, msg_id = self._header(rng.choice(["submit", "ping", "hello"]))
        depth = rng.choice([MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 100, 1000, 5000, 50_000])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        inner = opener * depth + b"1" + closer * depth
        body = _json({k: v for k, v in header.items() if k != "spec"})[:-1]
        field_name = "spec" if header["type"] == "submit" else "zz_deep"
        hjson = body + b',"' + field_name.encode() + b'":' + inner + b"}"
        if header["type"] == "submit" and opener == b"[":
            hjson = body + b',"spec":{"options":' + inner + b"}}"
        return self._signed("deep_nesting", hjson, msg_ids=(msg_id,))

    def huge_numbers(self) -> FuzzMessage:
        """Numbers too large for a double, with thousands of digits, or as field values."""
        rng = self.rng
        header, msg_id = self._header(rng.choice(["fetch_result", "submit", "ping"]))
        num = rng.choice([b"1e999", b"-1e400", b"9" * 5000, b"1" + b"0" * 400, b"1" * 4301, b"1e-99999",
                          str(2**64).encode(), b"-" + b"9" * 300, b"0." + b"0" * 5000 + b"1"])
        body = _json(header)[:-1]
        if header["type"] == "fetch_result":
            body = _json({k: v for k, v in header.items() if k != "index"})[:-1]
            hjson = body + b',"index":' + num + b"}"
        elif header["type"] == "submit":
            body = _json({k: v for k, v in header.items() if k != "spec"})[:-1]
            hjson = body + b',"spec":{"job_type":"footage","name":"x","fps":' + num + b',"preset":"nope"}}'
        else:
            hjson = body + b',"v":' + num + b"}"  # a duplicate "v": the number wins
        return self._signed("huge_numbers", hjson, msg_ids=(msg_id,))

    def non_finite(self) -> FuzzMessage:
        """``NaN`` / ``Infinity`` tokens anywhere in a signed header."""
        rng = self.rng
        header, msg_id = self._header(rng.choice(["submit", "fetch_result", "ping"]))
        token = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"])
        body = _json(header)[:-1]
        where = rng.randrange(3)
        if where == 0:
            hjson = body + b',"zz_x":' + token + b"}"
        elif where == 1:
            hjson = body + b',"zz_x":[1,{"a":' + token + b"}]}"
        else:
            hjson = _json({**header, "v": 0})[:-1].replace(b'"v":0', b'"v":' + token) + b"}"
        return self._signed("non_finite", hjson, msg_ids=(msg_id,))

    def duplicate_keys(self) -> FuzzMessage:
        """A key twice, the last value invalid (JSON's last-wins rule would keep it)."""
        rng = self.rng
        header, msg_id = self._header()
        key, bad = rng.choice([("v", str(PROTOCOL_VERSION + 1).encode()), ("v", b'"1"'), ("type", b'"nope"'), ("type", b"1"), ("msg_id", b"5"),
                               ("msg_id", b"null"), ("v", b"true")])
        hjson = _json(header)[:-1] + b',"' + key.encode() + b'":' + bad + b"}"
        return self._signed("duplicate_keys", hjson, msg_ids=(msg_id,))

    def wrong_field_type(self) -> FuzzMessage:
        """One schema field (``v``, ``type``, ``msg_id`` or a type field) of the wrong JSON type."""
        rng = self.rng
        mtype = rng.choice(sorted(CLIENT_TYPES))
        header, msg_id = self._header(mtype)
        fields = dict(SCHEMAS[mtype]["fields"])
        fields.update({"v": "int", "type": "str"})
        if mtype == "hello":
            header.setdefault("client", "fuzz")
        name = rng.choice(sorted(fields))
        tname = fields[name]
        values = _values_by_kind(rng)
        kinds = sorted(set(values) - _accepted_kinds(tname))
        if tname == "files":
            bad_files = [[1], ["a"], [{"name": "a"}], [{"name": "a", "size": -1}], [{"name": "a", "size": True}],
                         [{"name": 1, "size": 0}], [{"name": "a", "size": 1.0}],
                         [{"name": "a", "size": 0, "x": 1}], {"name": "a", "size": 0}, "a", None]
            header[name] = rng.choice(bad_files)
        elif tname == "str_list":
            header[name] = rng.choice([[1], "a", None])
        else:
            header[name] = values[rng.choice(kinds)]
        if name == "type" and isinstance(header[name], str):
            header[name] = ""  # a str type is allowed by shape; make it an unknown one
        if name == "v" and header[name] == PROTOCOL_VERSION and not isinstance(header[name], bool):
            header[name] = 0
        return self._signed("wrong_field_type", _json(header), msg_ids=(msg_id,))

    def missing_field(self) -> FuzzMessage:
        """A required field left out."""
        rng = self.rng
        mtype = rng.choice(sorted(CLIENT_TYPES))
        header, msg_id = self._header(mtype)
        required = ["v", "type"] + [f for f in SCHEMAS[mtype]["fields"] if f not in SCHEMAS[mtype]["optional"]]
        del header[rng.choice(required)]
        return self._signed("missing_field", _json(header), msg_ids=(msg_id,))

    def unknown_type(self) -> FuzzMessage:
        """A ``type`` no client may send: server types, near misses, junk."""
        rng = self.rng
        header, msg_id = self._header("ping")
        header["type"] = rng.choice(sorted(SERVER_TYPES) + ["", "Ping", "ping ", "ping\x00", "__init__", "_on_ping",
                                                            "submit\n", "x" * 10_000, "é", "\ud800",
                                                            _rand_text(rng, 1, 30)])
        if header["type"] in CLIENT_TYPES:  # _rand_text could hit one; keep it unknown
            header["type"] += "!"
        return self._signed("unknown_type", _json(header), msg_ids=(msg_id,))

    def extra_field(self) -> FuzzMessage:
        """A field the type's schema does not have (names no protocol version will use)."""
        rng = self.rng
        header, msg_id = self._header()
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(["zz_extra", "zz_" + _rand_text(rng, 1, 12), "zz\x00", "zz_\ud800", "zz_" + "k" * 5000])
            header[name] = _values_by_kind(rng)[rng.choice(sorted(_values_by_kind(rng)))]
        if header["type"] == "hello" and rng.random() < 0.3:
            header["server"] = "x"  # a reply field in a request
        return self._signed("extra_field", _json(header), msg_ids=(msg_id,))

    def wrong_version(self) -> FuzzMessage:
        """``v`` other than :data:`~protocol.PROTOCOL_VERSION`, of int or other type."""
        header, msg_id = self._header()
        header["v"] = self.rng.choice([0, PROTOCOL_VERSION - 1, -1, 10**20, 2**63, PROTOCOL_VERSION + 1, "1", 1.0, 1.5,
                                       True, None,
                                       [1], {"v": 1}])
        return self._signed("wrong_version", _json(header), msg_ids=(msg_id,))

    def submit_mismatch(self) -> FuzzMessage:
        """``submit`` whose ``files`` list disagrees with its buffers (count or sizes), or too many files."""
        rng = self.rng
        header, msg_id = self._header("submit")
        n = rng.randint(1, 5)
        bufs = [_rand_bytes(rng, 0, 64) for _ in range(n)]
        files = [{"name": f"in/f{i}.bin", "size": len(b)} for i, b in enumerate(bufs)]
        r = rng.randrange(4)
        if r == 0:
            bufs = bufs[:-1]
        elif r == 1:
            bufs.append(b"extra")
        elif r == 2:
            i = rng.randrange(n)
            files[i]["size"] = files[i]["size"] + rng.choice([1, -1 if files[i]["size"] else 2, 10**9])
        else:
            files[0]["name"] = files[-1]["name"] if n > 1 else "in"
            if n == 1:
                files.append({"name": "in/x", "size": 0})
                bufs.append(b"")
        header["files"] = files
        return self._signed("submit_mismatch", _json(header), bufs, msg_ids=(msg_id,))

    def bad_file_name(self) -> FuzzMessage:
        """``submit`` with one file name that must be refused (``..``, absolute, NUL, surrogates, long)."""
        rng = self.rng
        header, msg_id = self._header("submit")
        names = [rng.choice(BAD_NAMES)]
        if rng.random() < 0.3:
            names.insert(0, "good.png")
        header["files"] = [{"name": n, "size": 1} for n in names]
        hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")  # ascii escapes keep lone surrogates
        return self._signed("bad_file_name", hjson, [b"1"] * len(names), msg_ids=(msg_id,))

    def bad_spec(self) -> FuzzMessage:
        """``submit`` with a job spec that must be refused; checked with
        :func:`protocol.job_spec.validate_job_spec`, and sent as ``expect="any"`` in the rare
        case the mutation happens to be valid."""
        rng = self.rng
        header, msg_id = self._header("submit")
        spec: object = {"job_type": "footage", "name": "ok"}
        r = rng.randrange(14)
        if r == 0:
            spec["zz_unknown"] = 1
        elif r == 1:
            spec["job_type"] = rng.choice(["", "nope", "FOOTAGE", 1, None, ["footage"]])
        elif r == 2:
            spec["preset"] = rng.choice(["", "huge", "tiny ", 0, None, {"a": 1}])
        elif r == 3:
            spec[rng.choice(["fps", "video_fps"])] = rng.choice([0, -1, 1e308, 10**6, 1001, "24", True, [24]])
        elif r == 4:
            spec[rng.choice(["frame_count", "max_frames"])] = rng.choice([0, -5, 10**9, 10_001, 2.5, "3", False])
        elif r == 5:
            spec["options"] = rng.choice([{"zz": 1}, {"optimization": {"zz": 1}}, {"optimization": "x"},
                                          {"optimization": {"iterations": rng.choice([-1, 0, 10**12, 1.5, "9",
                                                                                      None, True])}},
                                          {"data": {"max_image_size": rng.choice([0, -1, 10**9, 1e300])}},
                                          {"model": {"n_init": rng.choice([-1, 10**12, "x", [], {}])}},
                                          {"optimization": {"batch_size": 10**9}},
                                          {"iterations": 10**15}, {"": 1}, {"a.b.c": 1}, []])
        elif r == 6:
            spec["orbit"] = rng.choice([{"zz": 1}, {"radius": "x"}, {"radius": -1e308}, [], "x"])
        elif r == 7:
            spec["name"] = rng.choice([1, None, [], {}])
        elif r == 8:
            spec = rng.choice([[], "footage", 1, None, True])
        elif r == 9:
            spec["models"] = rng.choice(["x", 1, []])
        elif r == 10:
            spec["options"] = rng.choice([{"optimization": {"iterations": 10**4000}},  # under the 4300-digit limit
                                          {"optimization": {"lr_means": -1e300}},
                                          {"optimization": {"lr_means": 10**400}}])
        elif r == 11:
            spec["mask_prompt"] = rng.choice([1, [], {}])
        elif r == 12:
            d: dict = {}
            cur = d
            for _ in range(MAX_JSON_DEPTH - 3):
                cur["a"] = {}
                cur = cur["a"]
            spec[rng.choice(["options", "multiview", "generation"])] = d  # a jobs reply would be too deep
        else:
            spec["preset"] = "high"
            spec["options"] = {"model": {"n_init": 10**10}, "optimization": {"iterations": 10**10}}
        expect = "error"
        try:
            validate_job_spec(spec)  # type: ignore[arg-type]
            expect = "any"
        except Exception:  # noqa: BLE001 - any refusal (InvalidOptionError, TypeError) means invalid
            pass
        if not isinstance(spec, dict):
            expect = "error"  # the schema's "dict" type refuses it before validate_job_spec
        header["spec"] = spec
        return self._signed("bad_spec", _json(header), msg_ids=(msg_id,), expect=expect)

    def job_requests(self) -> FuzzMessage:
        """``watch`` / ``cancel`` / ``fetch_result`` with random job ids and indexes (well-formed;
        a known id may succeed, so those are ``expect="any"``)."""
        rng = self.rng
        mtype = rng.choice(["watch", "cancel", "fetch_result"])
        job_id = self._job_id()
        fields: dict = {"job_id": job_id}
        if mtype == "fetch_result":
            fields["index"] = rng.choice([0, 1, 2, 3, 4, 5, -1, -(2**63), 2**63, 10**100, rng.randint(-100, 100)])
        expect = "any" if job_id in self.known_jobs else "error"
        return self._valid("job_requests", mtype, expect=expect, **fields)

    def many_buffers(self) -> FuzzMessage:
        """Very many frames: a request with thousands of buffers, or a submit over the file-count limit."""
        rng = self.rng
        from protocol.limits import UPLOAD_FILES

        if rng.random() < 0.5:
            header, msg_id = self._header(rng.choice(["ping", "list_jobs", "hello"]))
            bufs = [b""] * rng.choice([100, 1000, 10_000])
            return self._signed("many_buffers", _json(header), bufs, msg_ids=(msg_id,))
        header, msg_id = self._header("submit")
        n = UPLOAD_FILES + 1
        header["files"] = [{"name": f"{i}", "size": 0} for i in range(n)]
        return self._signed("many_buffers", _json(header), [b""] * n, msg_ids=(msg_id,))

    def oversized_header(self) -> FuzzMessage:
        """A signed header just over :data:`~protocol.strict_json.MAX_HEADER_BYTES`."""
        header, msg_id = self._header("ping")
        body = _json(header)[:-1] + b',"zz_pad":"'
        hjson = body + b"x" * (MAX_HEADER_BYTES - len(body) - 1) + b'"}'
        return self._signed("oversized_header", hjson, msg_ids=(msg_id,))

    def not_utf8(self) -> FuzzMessage:
        """A signed header with bytes that are not UTF-8 (inside a string or outside)."""
        rng = self.rng
        header, msg_id = self._header()
        hjson = _json(header)
        pos = rng.randrange(len(hjson))
        hjson = hjson[:pos] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]) + hjson[pos:]
        return self._signed("not_utf8", hjson, msg_ids=(msg_id,))

    def valid(self) -> FuzzMessage:
        """A well-formed ``ping`` / ``hello`` / ``list_jobs`` (success expected)."""
        mtype = self.rng.choice(["ping", "hello", "list_jobs"])
        return self._valid("valid", mtype, **self._fields_for(mtype))

    def valid_submit(self) -> FuzzMessage:
        """A well-formed ``submit`` of a tiny job with no files (a fake pipeline completes it, the
        real one fails it at ingest)."""
        return self._valid("valid_submit", "submit", spec={"job_type": "footage", "preset": "tiny", "name": "ok"},
                           files=[])


# ---- the driver -------------------------------------------------------------------------


@dataclass
class FuzzStats:
    """What a fuzz run saw. ``findings`` holds at most 50 problem descriptions."""

    sent: int = 0
    replies: Counter = field(default_factory=Counter)          # reply type or "error:<code>"
    families: Counter = field(default_factory=Counter)         # messages sent per family
    events: int = 0                                            # job events that were not replies
    late: int = 0                                              # replies to an earlier message
    no_reply: int = 0                                          # messages with no reply in time
    wrong_success: int = 0                                     # invalid message answered with a success
    leaks: int = 0                                             # error with a traceback or the data dir
    undecodable_replies: int = 0                               # replies failing the client's checks
    batches: int = 0
    ping_failures: int = 0
    findings: list = field(default_factory=list)

    def finding(self, text: str) -> None:
        """Record a problem (the first 50 are kept)."""
        if len(self.findings) < 50:
            self.findings.append(text)

    def as_dict(self) -> dict:
        """The stats as JSON-ready data."""
        return {"sent": self.sent, "replies": dict(sorted(self.replies.items())),
                "families": dict(sorted(self.families.items())), "events": self.events, "late": self.late,
                "no_reply": self.no_reply, "wrong_success": self.wrong_success, "leaks": self.leaks,
                "undecodable_replies": self.undecodable_replies, "batches": self.batches,
                "ping_failures": self.ping_failures, "findings": self.findings}


def reproducer(messages) -> list[dict]:
    """Messages as JSON-ready records (family, expectation, base64 frames) that
    :func:`replay` sends again."""
    return [{"family": m.family, "expect": m.expect,
             "frames_b64": [base64.b64encode(bytes(f)).decode("ascii") for f in m.frames]} for m in messages]


def replay(address: str, records: list[dict], timeout_s: float = 5.0) -> list[Optional[list]]:
    """Send recorded messages (:func:`reproducer`) one at a time over a DEALER socket.

    Returns:
        Per message, the raw reply frames, or None where none came within ``timeout_s``.
    """
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    out = []
    try:
        for rec in records:
            sock.send_multipart([base64.b64decode(f) for f in rec["frames_b64"]])
            out.append(sock.recv_multipart() if sock.poll(int(timeout_s * 1000)) else None)
    finally:
        sock.close(0)
        ctx.term()
    return out


def describe(frames: list, limit: int = 300) -> str:
    """A short, printable description of a message's frames (for findings and reproducers)."""
    parts = [f"{len(frames)} frame(s)"]
    for i, f in enumerate(frames[:3]):
        parts.append(f"[{i}] {len(f)} B {bytes(f[:limit])!r}")
    return "; ".join(parts)


class FuzzDriver:
    """Sends a generator's messages to a server one at a time and checks the replies.

    Args:
        address: the server's endpoint.
        key: its HMAC key (also for the liveness ping and for decoding replies).
        forbidden: strings no ``error`` reply may contain (the server's data dir);
            ``"Traceback"`` is always forbidden.
        reply_timeout_s: how long to wait for the reply to one message.
        ping_timeout_s: how long the after-batch ``ping`` may take.
        client_factory: makes the liveness client, ``client_factory(address, key, timeout_s)``;
            :class:`protocol.BackendClient` by default.
        keep: how many of the last messages :attr:`recent` holds (for a reproducer).

    Attributes:
        recent: the last ``keep`` messages sent, oldest first.
    """

    def __init__(self, address: str, key: bytes, forbidden=(), reply_timeout_s: float = 5.0,
                 ping_timeout_s: float = 5.0, client_factory: Optional[Callable] = None, keep: int = 200):
        self.address = address
        self.key = bytes(key)
        self.forbidden = ["Traceback", *[str(s) for s in forbidden if s]]
        self.reply_timeout_s = reply_timeout_s
        self.ping_timeout_s = ping_timeout_s
        self.client_factory = client_factory or (lambda a, k, t: BackendClient(a, k, timeout_s=t))
        self.ctx = zmq.Context()
        self.sock = None
        self._sent_ids: set[str] = set()
        self.recent: deque = deque(maxlen=keep)
        self._open()

    def _open(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDTIMEO, int(self.reply_timeout_s * 1000))
        self.sock.connect(self.address)

    def close(self) -> None:
        """Close the socket and the context."""
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None
        self.ctx.term()

    def ping(self) -> Optional[float]:
        """A valid ``ping`` through a fresh client; the round trip in s, or None on no answer."""
        try:
            client = self.client_factory(self.address, self.key, self.ping_timeout_s)
        except Exception:  # noqa: BLE001 - a client that cannot be made counts as a failed ping
            return None
        try:
            return client.ping()
        except Exception:  # noqa: BLE001 - BackendUnavailable, RemoteError, ProtocolError
            return None
        finally:
            client.close()

    def _check_reply(self, msg: FuzzMessage, header: dict, stats: FuzzStats, gen: FuzzGenerator) -> None:
        mtype = header["type"]
        stats.replies[f"error:{header['code']}" if mtype == "error" else mtype] += 1
        if mtype == "error":
            text = json.dumps(header, ensure_ascii=False)
            bad = [s for s in self.forbidden if s in text]
            if bad:
                stats.leaks += 1
                stats.finding(f"{msg.family}: error reply holds {bad}: {header['message'][:300]!r}; "
                              f"message {describe(msg.frames)}")
        elif msg.expect == "error":
            stats.wrong_success += 1
            stats.finding(f"{msg.family}: invalid message answered with {mtype}: {describe(msg.frames)}")
        if mtype == "queued" and msg.family in ("valid_submit", "bad_spec"):
            gen.known_jobs.append(header["job_id"])

    def send_one(self, msg: FuzzMessage, stats: FuzzStats, gen: FuzzGenerator) -> None:
        """Send one message and wait for (and check) its reply; job events met on the way are counted."""
        stats.sent += 1
        stats.families[msg.family] += 1
        self.recent.append(msg)
        try:
            self.sock.send_multipart(msg.frames, copy=len(msg.frames) < 50)
        except zmq.Again:
            stats.no_reply += 1
            stats.finding(f"{msg.family}: could not send within {self.reply_timeout_s} s")
            self._open()
            return
        deadline = time.monotonic() + self.reply_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                stats.no_reply += 1
                stats.finding(f"{msg.family}: no reply within {self.reply_timeout_s} s: {describe(msg.frames)}")
                self._open()  # drop anything late for this message
                break
            frames = self.sock.recv_multipart()
            try:
                header, _ = decode_message(frames, self.key, "to_client")
            except ProtocolError as e:
                stats.undecodable_replies += 1
                stats.finding(f"{msg.family}: reply failed the client's checks ({e}): {describe(frames)}")
                break
            reply_to = header.get("in_reply_to")
            if header["type"] in EVENT_TYPES and reply_to is None:
                stats.events += 1
                text = json.dumps(header, ensure_ascii=False)
                if any(s in text for s in self.forbidden):
                    stats.leaks += 1
                    stats.finding(f"event {header['type']} holds a forbidden string: {text[:300]}")
                continue
            if reply_to is not None and reply_to not in msg.msg_ids and reply_to in self._sent_ids:
                stats.late += 1
                continue
            self._check_reply(msg, header, stats, gen)
            break
        self._sent_ids.update(msg.msg_ids)

    def run(self, gen: FuzzGenerator, n: int, batch: int = 200,
            after_batch: Optional[Callable[[FuzzStats], Optional[str]]] = None,
            stop_on_failure: bool = True) -> FuzzStats:
        """Send ``n`` messages from ``gen``; after each ``batch`` (and at the end) ping the
        server through a fresh client and call ``after_batch(stats)``, which returns a
        problem description (process dead, thread dead) or None.

        Returns:
            The :class:`FuzzStats`; ``ping_failures`` counts unanswered after-batch pings.
            With ``stop_on_failure`` the run ends at the first failed check.
        """
        stats = FuzzStats()
        for i in range(n):
            self.send_one(gen.next(), stats, gen)
            if (i + 1) % batch == 0 or i + 1 == n:
                stats.batches += 1
                problem = None
                if self.ping() is None:
                    stats.ping_failures += 1
                    problem = f"no pong within {self.ping_timeout_s} s after message {i + 1}"
                extra = after_batch(stats) if after_batch else None
                problem = problem or extra
                if problem:
                    stats.finding(problem)
                    if stop_on_failure:
                        break
        return stats
