"""Footage of any image type ingest accepts uploads from the client: ``.jpg`` footage
(``file_path`` with or without the extension) is collected, submitted to a real
in-process backend and reconstructed with the ``tiny`` preset.

Before issue 12 the client looked only for ``.png`` when ``file_path`` had no extension,
so such a folder worked with ``backend run`` but failed from the add-on.

JPEG has no alpha, and reconstruction carves its initial points from the object masks
(alpha), so footage of nothing but JPEGs cannot reconstruct (with ``backend run`` either:
"no 3D point lies inside the object masks"). The reconstruction test therefore uses
footage whose every other camera is a JPEG named without extension, the rest RGBA PNGs.
"""

import time

import pytest

from protocol import BackendClient, collect_footage_files
from protocol.formats import TERMINAL_STATES, read_manifest
from tests.helpers.backend_proc import server_thread
from tests.helpers.footage import make_tiny_footage

KEY = b"footage-upload-test-key"


@pytest.mark.parametrize("ext,name_ext", [(".jpg", False), (".jpg", True), (".jpeg", False), (".webp", False)])
def test_collect_footage_finds_every_image_type(tmp_path, ext, name_ext):
    folder = make_tiny_footage(tmp_path / "f", n_cams=2, n_times=2, size=16, image_ext=ext, name_ext=name_ext)
    files = collect_footage_files(folder)
    images = sorted(n for n in files if n.endswith(ext))
    assert images == sorted([f"train/r_{c:03d}_{t:03d}{ext}" for c in range(2) for t in range(2)]
                            + [f"test/r_000_{t:03d}{ext}" for t in range(2)])
    assert set(files) == {"transforms_train.json", "transforms_test.json", *images}
    assert files["train/r_001_001" + ext] == (folder / "train" / f"r_001_001{ext}").read_bytes()


@pytest.fixture
def backend(tmp_path):
    """A real server thread (the real pipeline) on a free port; yields its address."""
    with server_thread(tmp_path / "data", KEY, ping_timeout_s=10, join_timeout_s=30) as address:
        yield address


@pytest.mark.slow  # one whole ``tiny`` job: seconds alone, longer on a loaded machine
@pytest.mark.timeout(300)
def test_jpg_footage_reconstructs_through_the_client(backend, tmp_path):
    folder = make_tiny_footage(tmp_path / "jpg", n_cams=4, n_times=3, size=32, image_ext=(".png", ".jpg"))
    assert len(list((folder / "train").glob("*.jpg"))) == len(list((folder / "train").glob("*.png"))) == 6
    assert "train/r_001_002.jpg" in collect_footage_files(folder)
    with BackendClient(backend, KEY, timeout_s=20) as c:
        job = c.submit_footage(folder, {"job_type": "footage", "preset": "tiny"})
        deadline, last = time.monotonic() + 240, None
        while time.monotonic() < deadline:
            ev = c.poll_event(0.5)
            if ev and ev["job_id"] == job and ev["type"] in TERMINAL_STATES:
                last = ev
                break
        assert last is not None and last["type"] == "completed", last
        out = c.fetch_result(job, tmp_path / "result")
    manifest = read_manifest(out)
    assert manifest.frame_count == last["frame_count"] == 3
    assert manifest.times == [0.0, 0.5, 1.0]
    assert all(p.is_file() and p.stat().st_size > 0 for p in manifest.frame_paths(out))
