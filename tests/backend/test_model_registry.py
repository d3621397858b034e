"""The model registry: role resolution, fast and clear missing-model errors offline, and
loading tiny random-weight models through the real diffusers classes from a local folder."""

import os
import subprocess
import sys
import time

import pytest

from backend.errors import JobError
from backend.models import registry
from tests.conftest import REPO_ROOT


@pytest.fixture
def empty_models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # an empty hub cache
    return tmp_path / "models"


def test_missing_models_fail_fast_naming_each(empty_models_dir):
    start = time.perf_counter()
    with pytest.raises(registry.ModelMissingError) as err:
        registry.require(["text_to_image", "image_to_video", "multiview"])
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, elapsed
    exc = err.value
    assert exc.code == "model_missing" and exc.missing == ["text_to_image", "image_to_video", "multiview"]
    for role in ("text_to_image", "image_to_video", "multiview"):
        spec = registry.ROLES[role]
        assert spec.default_source in exc.message
        assert f"python -m backend models download {role}" in exc.message
        assert f"{spec.download_gb:g} GB" in exc.message
    assert "CC-BY-NC" in exc.message  # the multiview default's license is named


def test_resolution_precedence(empty_models_dir, tmp_path):
    assert registry.resolve("multiview").kind == "hub"
    local = empty_models_dir / "multiview"
    local.mkdir(parents=True)
    r = registry.resolve("multiview")
    assert (r.kind, r.path, r.present) == ("local", local, True)
    other = tmp_path / "elsewhere"
    other.mkdir()
    r = registry.resolve("multiview", {"multiview": str(other)})
    assert r.path == other
    r = registry.resolve("multiview", {"multiview": str(tmp_path / "nope")})
    assert r.kind == "local" and not r.present
    r = registry.resolve("multiview", {"multiview": "someone/some-model"})
    assert r.kind == "hub" and not r.present
    with pytest.raises(JobError, match="unknown model role"):
        registry.resolve("upscaler")


def test_download_offline_is_a_clear_error(empty_models_dir):
    with pytest.raises(JobError) as err:
        registry.download("text_to_image")
    assert err.value.code == "offline" and "HF_HUB_OFFLINE" in err.value.message


def test_tiny_text_to_image_loads_through_the_registry(empty_models_dir):
    from tests.helpers.tiny_models import save_tiny_text_to_image

    save_tiny_text_to_image(empty_models_dir / "text_to_image")
    pipe = registry.load("text_to_image")
    from diffusers import StableDiffusionPipeline

    assert isinstance(pipe, StableDiffusionPipeline)  # what AutoPipelineForText2Image picks for this folder
    assert pipe.unet.config.block_out_channels == [32, 64] or tuple(pipe.unet.config.block_out_channels) == (32, 64)
    # A folder that is not a model is an error naming the role and the folder, not a crash.
    bad = empty_models_dir / "image_to_video"
    bad.mkdir()
    (bad / "model_index.json").write_text("{not json")
    with pytest.raises(JobError) as err:
        registry.load("image_to_video")
    assert err.value.code == "model_invalid" and "image_to_video" in err.value.message


def test_models_cli_list_and_verify(empty_models_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "backend", "models", "list"], capture_output=True, text=True,
                         env=env, cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    for role in registry.ROLES:
        assert role in out.stdout
    verify = subprocess.run([sys.executable, "-m", "backend", "models", "verify", "multiview"],
                            capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60)
    assert verify.returncode == 1 and "model_missing" in verify.stderr and "zero123plus" in verify.stderr
    assert time.perf_counter() - start < 30
