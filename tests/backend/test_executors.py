"""The executor boundary (issue 17 item 1): the server builds its executor by name; the
local one stays the default, records the node that ran each job and needs no Ray."""

import os
import socket
import subprocess
import sys

import pytest

from backend.executors import EXECUTORS, make_executor
from backend.jobs import JobStore
from backend.pipeline import runner
from backend.worker import Worker
from protocol import BackendClient
from tests.backend.test_server_inprocess import fake_run_job, wait_for
from tests.helpers.backend_proc import REPO_ROOT, server_thread


def test_make_executor_builds_local_and_refuses_unknown_names(tmp_path):
    store = JobStore(tmp_path)
    assert isinstance(make_executor("local", store, lambda h, b: None), Worker)
    assert EXECUTORS == ("local", "ray")
    with pytest.raises(ValueError, match="unknown executor 'slurm'"):
        make_executor("slurm", store, lambda h, b: None)
    with pytest.raises(ValueError, match="takes no options"):
        make_executor("local", store, lambda h, b: None, address="auto")


def test_the_local_executor_is_the_default_records_its_node_and_loads_no_ray(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_job", fake_run_job)
    ray_loaded_before = "ray" in sys.modules  # another test file of this session used Ray
    key = b"test-key-0123456789abcdef"
    with server_thread(tmp_path / "data", key) as address, BackendClient(address, key, timeout_s=5) as c:
        job = c.submit({"name": "ok"}, {"a.txt": b"a"})
        events = wait_for(c, job, {"completed"})
        started = [e for e in events if e["type"] == "started"]
        assert started and started[0]["node"] == socket.gethostname()
        assert c.list_jobs()[0]["node"] == socket.gethostname()
    assert ray_loaded_before or "ray" not in sys.modules  # the default path never imports Ray


def test_the_local_path_imports_no_ray_in_a_fresh_interpreter(tmp_path):
    code = ("import sys\nfrom backend import server\nfrom backend.executors import make_executor\n"
            "from backend.jobs import JobStore\n"
            f"make_executor('local', JobStore({str(tmp_path)!r}), lambda h, b: None)\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert done.returncode == 0, done.stderr[-2000:]
