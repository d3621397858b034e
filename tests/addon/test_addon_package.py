"""Build the extension (linux-x64), validate it, install it into bpy, check registration."""

import sys
from pathlib import Path

import importlib.util
import os
import re
import subprocess
import zipfile

import pytest

from _run import BLENDERS_WITH_42, REPO, run_bpy_script

sys.path.insert(0, str(REPO))
import build_addon  # noqa: E402

if importlib.util.find_spec("bpy") is None:  # do not import bpy in the pytest process
    pytest.skip("needs the bpy module", allow_module_level=True)


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    try:
        zips = build_addon.build(["linux-x64"], out, wheel_cache=REPO / "dist" / "wheel_cache")
    except RuntimeError as exc:
        if "pip download failed" in str(exc) and os.environ.get("CI") != "true":
            pytest.skip(f"pyzmq wheels not cached and no network: {exc}")
        raise
    assert len(zips) == 1
    return zips[0]


def test_zip_contents(zip_path):
    import zipfile
    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names
    assert "protocol/client.py" in names and "importer/nodes.py" in names
    formats = {"__init__", "ply", "manifest", "time_grid", "transforms", "media", "job_states", "compositing"}
    assert {f"protocol/formats/{m}.py" for m in formats} <= set(names)
    wheels = [n for n in names if n.startswith("wheels/")]
    assert any("cp311-cp311-manylinux" in n for n in wheels)
    assert any("cp312-abi3-manylinux" in n for n in wheels)
    manifest = zipfile.ZipFile(zip_path).read("blender_manifest.toml").decode()
    for wheel in wheels:
        assert f'"./{wheel}"' in manifest
    assert not any("__pycache__" in n for n in names)


def test_bundled_importer_uses_the_bundled_formats(zip_path, tmp_path):
    """Unzipped as a package (as Blender installs it), the importer and capture modules find
    ``protocol.formats`` inside the extension, without the repository and without pyzmq."""
    ext = tmp_path / "ext" / "gen4d_ext"
    zipfile.ZipFile(zip_path).extractall(ext)
    code = (
        "import sys; sys.path = [p for p in sys.path if p not in ('', %r)]; sys.path.insert(0, %r)\n"
        "import gen4d_ext.importer.frame_split as fs, gen4d_ext.importer.manifest as mf, gen4d_ext.capture as cap\n"
        "assert fs._ply.__name__ == 'gen4d_ext.protocol.formats.ply', fs._ply.__name__\n"
        "assert mf._manifest_format.__name__ == 'gen4d_ext.protocol.formats.manifest'\n"
        "assert cap._formats().__name__ == 'gen4d_ext.protocol.formats'\n"
        "assert 'protocol' not in sys.modules and 'zmq' not in sys.modules\n"
        "print(fs.REQUIRED[0], len(fs.splat_attributes(3)))\n") % (str(REPO), str(tmp_path / "ext"))
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["f_dc_0", "19"]


def test_validator_rejects_bad_manifest(tmp_path):
    import shutil
    shutil.copytree(REPO / "blender_addon", tmp_path / "bad", ignore=shutil.ignore_patterns("__pycache__"))
    toml = tmp_path / "bad" / "blender_manifest.toml"
    toml.write_text(toml.read_text().replace('tagline = "', 'tagline = "Ends with a period.'))
    with pytest.raises(RuntimeError):
        build_addon.run_ext(build_addon.find_blender_ext(), "validate", str(tmp_path / "bad"))


@pytest.mark.parametrize("blender", BLENDERS_WITH_42)
def test_install_register_unregister(zip_path, tmp_path, blender):
    res = run_bpy_script("install_checks.py", zip_path,
                         env={"BLENDER_USER_RESOURCES": str(tmp_path / "user")}, blender=blender)
    assert res["install"] == ["FINISHED"]
    assert res["installed_under_user_resources"]
    assert res["enabled"] and res["panel"] and res["scene_prop"]
    assert {"submit_footage", "submit_prompt", "submit_image", "submit_video", "cancel", "import_result", "connect",
            "set_cycles_bounces", "prepare_scene"} <= set(res["ops"])
    # Bad input to the generation operators is reported Blender's way, before any upload.
    assert "type a prompt first" in res["empty_prompt"]
    assert "no such file" in res["missing_video"]
    assert "is not one of" in res["wrong_image_type"]
    assert "/extensions/" in res["protocol_file"]  # the bundled copy wins
    assert res["wheel_installed"] and res["plyfile_installed"]
    assert not res["zmq_imported_before"]
    assert res["zmq_file"].startswith(res["user_resources"]), res["zmq_file"]  # the bundled wheel
    assert res["zmq_version"] == "27.3.0" and res["zmq_roundtrip"] == "ping"
    assert res["loopback"] == [True, True, True, True, False, False]
    assert res["remote_refused"]
    # A dead backend: immediate start, an "unreachable" report, and a fast, clean unregister.
    assert res["ensure_worker_s"] < 0.5
    assert res["reachable"] is False and res["state_reachable"] is False
    assert res["unregister_s"] < 3.0
    assert not res["thread_alive_after"] and not res["panel_after"] and not res["timer_after"]


def test_every_platform_zip_validates_and_carries_only_its_wheels(tmp_path):
    """One zip per platform, each validated by Blender's blender_ext.py (inside build()),
    each listing exactly the pyzmq wheels of its platform (cp311 + cp312-abi3)."""
    platforms = sorted(build_addon.PLATFORM_TAGS)
    try:
        zips = build_addon.build(platforms, tmp_path / "dist", wheel_cache=REPO / "dist" / "wheel_cache")
    except RuntimeError as exc:
        if "pip download failed" in str(exc) and os.environ.get("CI") != "true":
            pytest.skip(f"pyzmq wheels not cached and no network: {exc}")
        raise
    assert len(zips) == len(platforms) >= 5
    arch = {"windows-x64": "win_amd64", "macos-arm64": "universal2", "macos-x64": "universal2",
            "linux-x64": "x86_64", "linux-arm64": "aarch64"}
    for platform, path in zip(platforms, zips):
        names = zipfile.ZipFile(path).namelist()
        wheels = sorted(n for n in names if n.startswith("wheels/"))
        assert len(wheels) == 3, (platform, wheels)
        assert "wheels/plyfile-1.1.3-py3-none-any.whl" in wheels
        zmq = [w for w in wheels if "pyzmq" in w]
        assert len(zmq) == 2 and all(w.endswith(f"{arch[platform]}.whl") for w in zmq), (platform, wheels)
        assert any("-cp311-cp311-" in w for w in wheels) and any("-cp312-abi3-" in w for w in wheels)
        manifest = zipfile.ZipFile(path).read("blender_manifest.toml").decode()
        listed = sorted(re.findall(r'"\./(wheels/[^"]+)"', manifest))
        assert listed == wheels, (platform, listed)
        assert re.search(r'(?m)^platforms = \["' + platform + r'"\]', manifest), (platform, manifest[:400])
