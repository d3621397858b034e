"""The importer's PLY → splat attribute conversion and its static/dynamic split (numpy and
plyfile only; the module is loaded from its file, no bpy). Reference values come from the
backend's own PLY reader (``backend.gaussians.ply``), so the two sides agree on the layout."""

import importlib.util
import sys

import numpy as np
import pytest
from plyfile import PlyData

from _run import REPO
from backend.gaussians.ply import SH_C0, read_gaussians_ply, write_gaussians_ply
from samples.synthetic_result import write_result

spec_ = importlib.util.spec_from_file_location("gen4d_frame_split",
                                               REPO / "blender_addon" / "importer" / "frame_split.py")
frame_split = importlib.util.module_from_spec(spec_)
sys.modules[spec_.name] = frame_split  # dataclasses look their module up
spec_.loader.exec_module(frame_split)


def _frames(root):
    return sorted((root / "frames").glob("frame_*.ply"))


def _split(tmp_path, root):
    frames = _frames(root)
    cache = tmp_path / f"cache_{root.name}"
    cache.mkdir()
    return frame_split.split_frames(frames, [cache / f.name for f in frames])


def test_attribute_values_follow_the_3dgs_conventions(tmp_path):
    write_result(tmp_path / "r", n=64, frames=1, sh_degree=2, opacity=np.linspace(-4, 4, 64))
    path = _frames(tmp_path / "r")[0]
    ply = read_gaussians_ply(path)
    vertices = PlyData.read(str(path))["vertex"].data
    values = {a.name: frame_split.attribute_values(vertices, a, 2) for a in frame_split.splat_attributes(2)}
    assert list(values) == ["gen4d_rotation", "gen4d_color", "gen4d_alpha", "gen4d_scale",
                            *(f"gen4d_sh_{k}" for k in range(1, 9))]
    quats = ply["quats"] / np.linalg.norm(ply["quats"], axis=1, keepdims=True)
    np.testing.assert_allclose(values["gen4d_rotation"], quats, atol=1e-6)
    # SH degree 2: the colour is left unclamped for the material (it clamps after the view terms).
    np.testing.assert_allclose(values["gen4d_color"], 0.5 + SH_C0 * ply["sh"][:, 0], atol=1e-6)
    assert values["gen4d_color"].min() < 0
    np.testing.assert_allclose(values["gen4d_alpha"][:, 0], 1 / (1 + np.exp(-ply["opacity_logits"])), atol=1e-6)
    np.testing.assert_allclose(values["gen4d_scale"], 3 * np.exp(ply["log_scales"]), rtol=1e-6)
    for k in range(1, 9):  # basis k, RGB: the backend's [N, K, 3] coefficients
        np.testing.assert_array_equal(values[f"gen4d_sh_{k}"], ply["sh"][:, k])
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in values.values())


def test_degree_0_colour_is_clamped_and_a_zero_quaternion_is_the_identity(tmp_path):
    path = tmp_path / "one.ply"
    sh = np.array([[[-5.0, 0.0, 5.0]], [[0.0, 0.0, 0.0]]], np.float32)
    write_gaussians_ply(path, np.zeros((2, 3), np.float32), np.array([[0, 0, 0, 0], [0, 0, 0, 2]], np.float32),
                        np.zeros((2, 3), np.float32), np.zeros(2, np.float32), sh)
    vertices = PlyData.read(str(path))["vertex"].data
    attrs = {a.name: a for a in frame_split.splat_attributes(0)}
    color = frame_split.attribute_values(vertices, attrs["gen4d_color"], 0)
    np.testing.assert_allclose(color[0], [0.0, 0.5, 0.5 + 5 * SH_C0], atol=1e-6)
    rotation = frame_split.attribute_values(vertices, attrs["gen4d_rotation"], 0)
    np.testing.assert_array_equal(rotation, [[1, 0, 0, 0], [0, 0, 0, 1]])


def test_split_keeps_constant_attributes_once_and_moving_ones_per_frame(tmp_path):
    write_result(tmp_path / "still", n=50, frames=3)
    still = _split(tmp_path, tmp_path / "still")
    assert [a.name for a in still.dynamic] == []
    assert sorted(still.static) == ["gen4d_alpha", "gen4d_color", "gen4d_rotation", "gen4d_scale"]
    assert still.cache_columns == ["x", "y", "z"]
    means = write_result(tmp_path / "spin", n=50, frames=3, spin=0.4)
    spin = _split(tmp_path, tmp_path / "spin")
    assert [a.name for a in spin.dynamic] == ["gen4d_rotation"]
    assert spin.cache_columns == ["x", "y", "z", "rot_0", "rot_1", "rot_2", "rot_3"]
    for i, path in enumerate(spin.cache_files):
        cached = PlyData.read(str(path))["vertex"].data
        assert list(cached.dtype.names) == spin.cache_columns
        np.testing.assert_array_equal(np.stack([cached[p] for p in "xyz"], -1), means[i])
        quats = read_gaussians_ply(_frames(tmp_path / "spin")[i])["quats"]
        np.testing.assert_allclose(np.stack([cached[f"rot_{j}"] for j in range(4)], -1),
                                   quats / np.linalg.norm(quats, axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_array_equal(spin.positions, means[0])


def test_frames_that_do_not_match_are_clear_errors(tmp_path):
    write_result(tmp_path / "a", n=20, frames=2)
    write_result(tmp_path / "b", n=30, frames=1, seed=1)
    frames = _frames(tmp_path / "a")
    with pytest.raises(ValueError, match="has 30 Gaussians, frame_0000.ply has 20"):
        frame_split.split_frames([frames[0], _frames(tmp_path / "b")[0]], [tmp_path / "c0.ply", tmp_path / "c1.ply"])
    bare = tmp_path / "bare.ply"
    frame_split.write_vertices(bare, {p: np.zeros(4, np.float32) for p in ("x", "y", "z", "opacity")})
    with pytest.raises(ValueError, match=r"lacks the 3DGS properties \['f_dc_0'"):
        frame_split.split_frames([bare], [tmp_path / "c.ply"])


def _load_importer_manifest():
    spec = importlib.util.spec_from_file_location("gen4d_importer_manifest",
                                                  REPO / "blender_addon" / "importer" / "manifest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_importer_reads_result_manifests_through_protocol_formats(tmp_path):
    manifest = _load_importer_manifest()
    write_result(tmp_path / "r", n=8, frames=3)
    info = manifest.read_manifest(tmp_path / "r")
    assert info.frame_count == 3 and info.times == [0.0, 0.5, 1.0] and info.fps == 24.0
    assert info.frame_files == [tmp_path / "r" / "frames" / f"frame_{i:04d}.ply" for i in range(3)]
    assert info.gaussian_count == 8 and info.spec == {"job_type": "synthetic"}
    (tmp_path / "r" / "frames" / "frame_0001.ply").unlink()
    with pytest.raises(FileNotFoundError, match="missing frame files"):
        manifest.read_manifest(tmp_path / "r")
    with pytest.raises(FileNotFoundError, match="manifest.json not found"):
        manifest.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "gen4d-result", "format_version": 9, "frame_files": []}')
    with pytest.raises(ValueError, match="unsupported format_version 9"):
        manifest.read_manifest(tmp_path)
    seq = manifest.sequence_manifest(tmp_path / "r" / "frames" / "frame_0000.ply", fps=12.0)
    assert seq.frame_count == 2 and seq.times == [0.0, 1.0] and seq.fps == 12.0


def test_importer_reads_the_image_formation_the_asset_was_fitted_for(tmp_path):
    """``image_formation`` from the manifest ("3dgs" when absent, as results written before it
    existed and bare PLY sequences are); the importer stores it on the object."""
    import json

    manifest = _load_importer_manifest()
    write_result(tmp_path / "r", n=8, frames=2)
    assert manifest.read_manifest(tmp_path / "r").image_formation == "3dgs"
    path = tmp_path / "r" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "image_formation": "blender"}))
    assert manifest.read_manifest(tmp_path / "r").image_formation == "blender"
    assert manifest.sequence_manifest(tmp_path / "r" / "frames").image_formation == "3dgs"
    path.write_text(json.dumps({**json.loads(path.read_text()), "image_formation": "linear"}))
    with pytest.raises(ValueError, match="image_formation"):
        manifest.read_manifest(tmp_path / "r")
