"""``python -m backend models download``: per-file resumable download through a fake hub
serving tiny random-weight models, the markers, and the architecture check."""

import json
import shutil

import pytest
import torch

from backend.__main__ import main
from backend.errors import JobError
from backend.models import download, download_state, registry
from backend.models.architecture_check import check_architecture
from backend.models.hub import HfHubClient
from tests.helpers import tiny_models as tm
from tests.helpers.fake_hub import FakeHub, add_fp16_variants, add_hub_extras

REPO = registry.ROLES["text_to_image"].default_source
SAVERS = {"text_to_image": tm.save_tiny_text_to_image, "image_to_video": tm.save_tiny_image_to_video,
          "multiview": tm.save_tiny_zero123plus, "sds_guidance": tm.save_tiny_zero123_guidance,
          "background_removal": tm.save_tiny_background_removal}


@pytest.fixture
def models(tmp_path, monkeypatch, t2i_repo):
    """An empty models folder, offline; the tiny repository's configs stand for the
    published architecture (what ``download`` and ``verify`` compare with)."""
    from backend.models import architecture_check

    published = configs_of(t2i_repo, ("unet", "vae", "text_encoder"))
    monkeypatch.setattr(architecture_check, "published_config", lambda role, component: published[component])
    monkeypatch.setenv(registry.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    return tmp_path / "models"


@pytest.fixture(scope="module")
def t2i_repo(tmp_path_factory):
    """A tiny sd-turbo-like repository: fp32 and fp16 weights, plus files no loader reads."""
    repo = tm.save_tiny_text_to_image(tmp_path_factory.mktemp("hub") / "sd-turbo")
    add_fp16_variants(repo)
    add_hub_extras(repo)
    return repo


def expected_files(repo):
    """The files the download rule should pick: configs and the fp16 weights only."""
    names = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    extras = {"README.md", ".gitattributes", "teaser.png", "tiny_single_file.ckpt", "tiny_single_file.safetensors"}
    return [n for n in names if n not in extras and not n.endswith(".msgpack")
            and (not n.endswith(".safetensors") or ".fp16." in n)]


def configs_of(folder, components):
    """``{component: config}`` read from a folder, as an explicit ``expected=``."""
    return {c: json.loads(((folder / c) if c else folder).joinpath("config.json").read_text()) for c in components}


def test_download_creates_a_loadable_folder_and_a_marker(models, t2i_repo):
    hub = FakeHub({REPO: t2i_repo})
    target = registry.download("text_to_image", hub=hub)
    want = expected_files(t2i_repo)
    assert hub.fetched == want  # no README, image, single-file checkpoint, Flax or fp32 duplicate
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in want and "model_index.json" in want
    marker = json.loads((target / download_state.MARKER).read_text())
    assert (marker["repo"], marker["revision"], marker["variant"]) == (REPO, hub.rev, "fp16")
    assert [(f["name"], f["size"]) for f in marker["files"]] == [(n, (t2i_repo / n).stat().st_size) for n in want]
    assert not (target / download_state.PARTIAL_MARKER).exists()
    resolved = registry.resolve("text_to_image")
    assert resolved.present and not resolved.incomplete
    pipe = registry.load("text_to_image")  # needs variant="fp16": only fp16 weights are there
    from safetensors.torch import load_file

    src = load_file(str(t2i_repo / "unet/diffusion_pytorch_model.fp16.safetensors"))["conv_in.weight"]
    assert torch.equal(pipe.unet.conv_in.weight.detach().half(), src)


def test_progress_is_reported_per_file_and_complete_files_are_skipped(models, t2i_repo):
    from tqdm import tqdm

    hub, events = FakeHub({REPO: t2i_repo}), []
    registry.download("text_to_image", hub=hub, on_file=events.append, progress=tqdm)
    want = expected_files(t2i_repo)
    n = len(want)
    assert [(e.index, e.count, e.name, e.status) for e in events] == [
        (i, n, name, status) for i, name in enumerate(want, 1) for status in ("fetch", "done")]
    assert [e.size for e in events[::2]] == [(t2i_repo / name).stat().st_size for name in want]
    assert hub.bars == [(name, (t2i_repo / name).stat().st_size) for name in want]  # one byte bar per file
    again, events = FakeHub({REPO: t2i_repo}), []
    registry.download("text_to_image", hub=again, on_file=events.append)
    assert again.fetched == [] and [e.status for e in events] == ["skip"] * n


def test_interrupted_download_leaves_no_marker_and_a_rerun_fetches_only_the_rest(models, t2i_repo):
    want = expected_files(t2i_repo)
    sizes = [(t2i_repo / name).stat().st_size for name in want]
    cut = next(i for i, s in enumerate(sizes) if s > 8 * 1024)  # a weight file, stopped half way
    hub = FakeHub({REPO: t2i_repo}, interrupt_after_bytes=sum(sizes[:cut]) + sizes[cut] // 2)
    with pytest.raises(KeyboardInterrupt):
        registry.download("text_to_image", hub=hub)
    target = models / "text_to_image"
    assert hub.fetched == want[:cut + 1]
    assert not (target / download_state.MARKER).exists() and (target / download_state.PARTIAL_MARKER).exists()
    assert not (target / want[cut]).exists()  # no half file under the final name
    resolved = registry.resolve("text_to_image")
    assert resolved.incomplete
    for call in (lambda: registry.require(["text_to_image"]), lambda: registry.load("text_to_image")):
        with pytest.raises(JobError) as err:
            call()
        assert err.value.code == "model_incomplete"
        assert "rerun `python -m backend models download text_to_image`" in err.value.message

    rerun = FakeHub({REPO: t2i_repo})
    registry.download("text_to_image", hub=rerun)
    assert rerun.fetched == want[cut:]
    assert (target / download_state.MARKER).exists() and not (target / download_state.PARTIAL_MARKER).exists()
    assert not registry.resolve("text_to_image").incomplete
    registry.load("text_to_image")


def test_a_changed_file_is_fetched_again_and_a_corrupted_transfer_fails(models, t2i_repo):
    registry.download("text_to_image", hub=FakeHub({REPO: t2i_repo}))
    weights = models / "text_to_image" / "vae/diffusion_pytorch_model.fp16.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, other content: only the SHA-256 tells
    weights.write_bytes(bytes(data))
    hub = FakeHub({REPO: t2i_repo})
    registry.download("text_to_image", hub=hub)
    assert hub.fetched == ["vae/diffusion_pytorch_model.fp16.safetensors"]

    shutil.rmtree(models / "text_to_image")
    bad = FakeHub({REPO: t2i_repo}, corrupt=("unet/diffusion_pytorch_model.fp16.safetensors",))
    with pytest.raises(JobError) as err:
        registry.download("text_to_image", hub=bad)
    assert err.value.code == "download_failed" and "unet/diffusion_pytorch_model.fp16.safetensors" in err.value.message
    assert not (models / "text_to_image" / download_state.MARKER).exists()
    assert registry.resolve("text_to_image").incomplete


def test_disk_space_is_checked_before_the_first_byte(models, t2i_repo, monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: usage(10 ** 12, 10 ** 12, 10 ** 6))
    hub = FakeHub({REPO: t2i_repo})
    with pytest.raises(JobError) as err:
        registry.download("text_to_image", hub=hub)
    assert err.value.code == "disk_full" and "0.00 GB are free" in err.value.message
    assert hub.fetched == []


def test_hub_errors_become_clear_job_errors(monkeypatch):
    import sys

    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, Response

    http = sys.modules[Response.__module__.split(".")[0]]  # httpx or httpx2, as huggingface_hub uses

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(JobError) as err:
        HfHubClient().list_files(REPO)
    assert err.value.code == "offline" and "HF_HUB_OFFLINE" in err.value.message

    monkeypatch.delenv("HF_HUB_OFFLINE")
    response = Response(403, request=http.Request("GET", "https://huggingface.co/api/models/x"))

    def gated(self, repo_id, **kwargs):
        raise GatedRepoError("403 gated", response=response)

    monkeypatch.setattr(HfApi, "model_info", gated)
    with pytest.raises(JobError) as err:
        HfHubClient().list_files("stabilityai/stable-video-diffusion-img2vid-xt")
    assert err.value.code == "model_gated"
    assert "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt" in err.value.message
    assert "hf auth login" in err.value.message


def test_a_folder_copied_by_hand_without_marker_still_works(models, t2i_repo):
    shutil.copytree(t2i_repo, models / "text_to_image")
    resolved = registry.resolve("text_to_image")
    assert resolved.present and not resolved.incomplete
    assert download_state.folder_state(resolved.path) == "unmanaged"
    registry.load("text_to_image")
    reports = check_architecture("text_to_image", resolved.path)
    assert all(r.config_keys > 0 for r in reports)
    assert {r.component: r.weight_files for r in reports}["unet"] == ["unet/diffusion_pytorch_model.safetensors"]


@pytest.mark.parametrize("role", list(SAVERS))
def test_every_tiny_role_passes_the_architecture_check(role, tmp_path):
    from backend.models.architecture_check import COMPONENTS

    folder = SAVERS[role](tmp_path / role)
    reports = check_architecture(role, folder, expected=configs_of(folder, COMPONENTS[role]))
    assert [r.component for r in reports] == list(COMPONENTS[role])
    assert all(r.tensors > 0 and r.config_keys > 0 for r in reports)


def test_a_unet_with_another_cross_attention_dim_fails_naming_the_key(tmp_path):
    from diffusers import UNet2DConditionModel

    folder = tm.save_tiny_text_to_image(tmp_path / "t2i")
    expected = configs_of(folder, ("unet", "vae", "text_encoder"))
    config = dict(UNet2DConditionModel.load_config(str(folder / "unet")))
    config["cross_attention_dim"] = 16
    UNet2DConditionModel.from_config(config).save_pretrained(str(folder / "unet"))
    check_architecture("text_to_image", folder, expected={})  # self-consistent: shapes alone cannot tell
    with pytest.raises(JobError) as err:
        check_architecture("text_to_image", folder, expected=expected)
    msg = err.value.message
    assert err.value.code == "model_invalid"
    assert "text_to_image: unet/config.json: cross_attention_dim is 16, the published architecture has 32" in msg


def test_a_weight_with_another_shape_fails_naming_the_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tm.save_tiny_text_to_image(tmp_path / "t2i")
    # A CLIP text encoder saved by transformers 4.x (the hub's): keys under "text_model.", and
    # the non-persistent position_ids buffer saved too. Loadable, so it must pass.
    text = folder / "text_encoder/model.safetensors"
    old = {("" if k.startswith("text_projection") else "text_model.") + k: v for k, v in load_file(str(text)).items()}
    save_file({**old, "text_model.embeddings.position_ids": torch.arange(77)[None]}, str(text))
    check_architecture("text_to_image", folder, expected={})
    path = folder / "unet/diffusion_pytorch_model.safetensors"
    state = load_file(str(path))
    state["conv_in.weight"] = torch.zeros(32, 8, 3, 3)
    del state["conv_out.bias"]
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(path))
    with pytest.raises(JobError) as err:
        check_architecture("text_to_image", folder, expected={})
    msg = err.value.message
    assert "text_to_image: unet: tensor conv_in.weight has shape [32, 8, 3, 3], the config implies [32, 4, 3, 3]" in msg
    assert "missing from the weights: conv_out.bias" in msg
    assert "the config does not define: extra.weight" in msg

    config = json.loads((folder / "text_encoder/config.json").read_text())
    config["architectures"] = ["CLIPVisionModel"]
    (folder / "text_encoder/config.json").write_text(json.dumps(config))
    with pytest.raises(JobError) as err:
        check_architecture("text_to_image", folder, expected={})
    assert "text_encoder/config.json names the class CLIPVisionModel, the loader expects CLIPTextModel" in \
        err.value.message


def test_cli_download_resumes_after_ctrl_c_and_verify_checks_architecture(models, t2i_repo, monkeypatch, capsys):
    want = expected_files(t2i_repo)
    hubs = iter([FakeHub({REPO: t2i_repo}, interrupt_after_bytes=(t2i_repo / want[0]).stat().st_size + 10),
                 FakeHub({REPO: t2i_repo})])
    monkeypatch.setattr(download, "default_hub", lambda: next(hubs))
    assert main(["models", "download", "text_to_image"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "rerun `python -m backend models download text_to_image` to resume" in err
    assert main(["models", "download", "text_to_image"]) == 0
    out = capsys.readouterr().out
    assert f"[1/{len(want)}] {want[0]}" in out and "already complete" in out
    assert f"[{len(want)}/{len(want)}] {want[-1]}" in out and "complete and architecture checked" in out

    assert main(["models", "verify", "text_to_image"]) == 0
    path = models / "text_to_image/unet/diffusion_pytorch_model.fp16.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    state["conv_in.weight"] = torch.zeros(32, 8, 3, 3, dtype=torch.float16)
    save_file(state, str(path))
    assert main(["models", "verify", "text_to_image"]) == 1
    assert "conv_in.weight has shape [32, 8, 3, 3]" in capsys.readouterr().err


def test_the_published_architecture_is_what_an_unspecified_check_compares_with(tmp_path):
    pytest.importorskip("backend.models.architectures")  # helper A's published configs
    folder = tm.save_tiny_zero123plus(tmp_path / "mv")
    with pytest.raises(JobError) as err:
        check_architecture("multiview", folder)
    assert "multiview: unet/config.json: cross_attention_dim is 32, the published architecture has 1024" in \
        err.value.message
    tiny = tm.save_tiny_background_removal(tmp_path / "seg")
    with pytest.raises(JobError) as err:
        check_architecture("background_removal", tiny)
    assert "background_removal: ./config.json: reduce_dim is 16, the published architecture has 64" in \
        err.value.message
