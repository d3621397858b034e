"""``video``, ``image`` and ``prompt`` jobs end to end through a real backend process,
with tiny random-weight models of the real classes in a local model folder:
(prompt -> image ->) (image -> video ->) masks -> anchored multi-view generation ->
reconstruction -> per-frame PLY. Quality is meaningless here; the structure is real.
And with no model on disk, a job fails at once naming each missing model, and the
backend keeps serving."""

import io
import json
import time

import imageio.v3 as iio
import numpy as np
import pytest

from tests.backend.test_server_subprocess import wait_terminal
from tests.helpers.backend_proc import BackendProcess
from tests.helpers.video import disc_frames, write_video

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames, _ = disc_frames(False)
    return write_video(tmp_path_factory.mktemp("video") / "disc.mp4", [f[..., :3] for f in frames], "libx264",
                       "yuv420p", "rgb24")


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    from tests.helpers.tiny_models import (save_tiny_image_to_video, save_tiny_text_to_image,
                                           save_tiny_zero123_guidance, save_tiny_zero123plus)

    models = tmp_path_factory.mktemp("models")
    save_tiny_zero123plus(models / "multiview")
    save_tiny_image_to_video(models / "image_to_video")
    save_tiny_text_to_image(models / "text_to_image")
    save_tiny_zero123_guidance(models / "sds_guidance")
    proc = BackendProcess(tmp_path_factory.mktemp("data"), extra_env={"GEN4D_MODELS_DIR": str(models)})
    proc.models_dir = models
    yield proc
    assert proc.stop() == 0, proc.log_text()


def _run(backend, spec, files, tmp_path, stages):
    with backend.client(timeout_s=20) as c:
        job = c.submit(spec, files)
        events = wait_terminal(c, job, timeout_s=300)
        done = events[-1]
        assert done["type"] == "completed", (done, backend.log_text()[-3000:])
        seen = [e["stage"] for e in events if e["type"] == "progress"]
        for stage in stages:
            assert stage in seen, (stage, sorted(set(seen)))
        assert any(e["type"] == "preview" for e in events)
        out = c.fetch_result(job, tmp_path / "result")
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(sorted(out.rglob("frames/*.ply"))) == manifest["frame_count"] == 4
    footage = json.loads((out / "generated_footage" / "transforms_train.json").read_text())
    assert len(footage["frames"]) == 4 * 7  # 4 frames x (input + 6 generated views)
    assert len(list((out / "generated_footage" / "train").glob("*.png"))) == 4 * 7
    return events, footage, manifest


def test_video_job(backend, video, tmp_path):
    # With the optional SDS term on novel cameras (every 5th step), as a job option.
    spec = {"job_type": "video", "video": video.name, "preset": "tiny", "options": {"sds_weight": 0.5, "sds_every": 5}}
    events, footage, manifest = _run(backend, spec,
                           {video.name: video.read_bytes()}, tmp_path, ("video_ingest", "multiview", "reconstruct"))
    assert footage["gen4d"]["mask_source"] == "opencv_background"
    assert manifest["stats"]["sds_steps"] == manifest["stats"]["iterations"] // 5
    # Every denoising step of every frame is reported (tiny: 2 steps x 4 frames).
    steps = {e["step"] for e in events if e["type"] == "progress" and e["stage"] == "multiview"}
    assert {0, 8} <= steps


def test_video_job_with_the_background_removal_model(backend, video, tmp_path):
    """The optional background-removal model, installed in the backend's models folder (a
    submitted job may not name a server folder), masks the video instead of the OpenCV
    fallback, and the job says so."""
    from tests.helpers.tiny_models import save_tiny_background_removal

    models = tmp_path / "models"
    models.mkdir()
    for role in backend.models_dir.iterdir():
        (models / role.name).symlink_to(role, target_is_directory=True)
    save_tiny_background_removal(models / "background_removal")
    with_remover = BackendProcess(tmp_path / "data", extra_env={"GEN4D_MODELS_DIR": str(models)})
    try:
        spec = {"job_type": "video", "video": video.name, "preset": "tiny", "mask_prompt": "an orange disc"}
        events, footage, _ = _run(with_remover, spec, {video.name: video.read_bytes()}, tmp_path,
                                  ("video_ingest", "multiview", "reconstruct"))
    finally:
        assert with_remover.stop() == 0, with_remover.log_text()
    assert footage["gen4d"]["mask_source"] == "background_removal"
    assert any("masks from background_removal" in e.get("message", "") for e in events if e["type"] == "progress")


def test_image_job(backend, tmp_path):
    img = np.zeros((40, 40, 4), np.uint8)
    img[8:32, 10:30] = (40, 160, 220, 255)
    buf = io.BytesIO()
    iio.imwrite(buf, img, extension=".png")
    _run(backend, {"job_type": "image", "image": "cube.png", "preset": "tiny"}, {"cube.png": buf.getvalue()},
         tmp_path, ("image_to_video", "multiview", "reconstruct"))


def test_prompt_job(backend, tmp_path):
    _run(backend, {"job_type": "prompt", "prompt": "a dancing robot", "preset": "tiny"}, {}, tmp_path,
         ("text_to_image", "image_to_video", "multiview", "reconstruct"))


def test_missing_models_fail_fast_and_backend_keeps_serving(tmp_path):
    backend = BackendProcess(tmp_path / "data", extra_env={"GEN4D_MODELS_DIR": str(tmp_path / "no_models"),
                                                           "HF_HOME": str(tmp_path / "hf")})
    try:
        with backend.client(timeout_s=20) as c:
            t0 = time.monotonic()
            job = c.submit({"job_type": "prompt", "prompt": "a cat", "preset": "standard"}, {})
            done = wait_terminal(c, job, timeout_s=60)[-1]
            assert time.monotonic() - t0 < 20
            assert (done["type"], done["code"]) == ("failed", "model_missing"), done
            for role, source in (("text_to_image", "stabilityai/sd-turbo"),
                                 ("image_to_video", "stabilityai/stable-video-diffusion-img2vid-xt"),
                                 ("multiview", "sudo-ai/zero123plus-v1.2")):
                assert source in done["message"] and f"models download {role}" in done["message"], done
            assert c.ping() < 10
    finally:
        assert backend.stop() == 0
