"""Per-frame Inria 3DGS PLY files (docs/design.md "Files"; layout: protocol.formats.ply)."""

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from backend.gaussians.ply import SH_C0, ply_property_names, read_gaussians_ply, write_gaussians_ply

RESERVED = {"t", "s", "u", "v", "red", "green", "blue", "r", "g", "b", "alpha"}


def random_gaussians(n, degree, seed=0):
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    return dict(means=rng.normal(size=(n, 3)).astype(np.float32),
                quats=rng.normal(size=(n, 4)).astype(np.float32),
                log_scales=rng.normal(-3, 0.5, size=(n, 3)).astype(np.float32),
                opacity_logits=rng.normal(size=n).astype(np.float32),
                sh=rng.normal(size=(n, k, 3)).astype(np.float32))


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_round_trip(tmp_path, degree):
    g = random_gaussians(37, degree, seed=degree)
    path = tmp_path / "sub" / "frame_0000.ply"
    write_gaussians_ply(path, **g)
    back = read_gaussians_ply(path)
    assert set(back) == set(g)
    for key, val in g.items():
        assert back[key].dtype == np.float32
        assert back[key].shape == val.shape
        np.testing.assert_array_equal(back[key], val)


def test_degree0_layout_matches_design(tmp_path):
    g = random_gaussians(5, 0)
    path = tmp_path / "f.ply"
    write_gaussians_ply(path, **g)
    ply = PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["vertex"]
    v = ply["vertex"]
    names = [p.name for p in v.properties]
    assert names == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                     "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert names == ply_property_names(0)
    assert all(p.val_dtype in ("f4", "float32", "float") for p in v.properties)
    assert not ply.text and ply.byte_order == "<"
    # Header says binary little endian, as Blender and the Inria viewers expect.
    head = path.read_bytes()[:200]
    assert b"format binary_little_endian 1.0" in head
    d = v.data
    np.testing.assert_array_equal(np.stack([d["x"], d["y"], d["z"]], 1), g["means"])
    np.testing.assert_array_equal(np.stack([d[f"rot_{i}"] for i in range(4)], 1), g["quats"])  # wxyz
    np.testing.assert_array_equal(np.stack([d[f"scale_{i}"] for i in range(3)], 1), g["log_scales"])
    np.testing.assert_array_equal(d["opacity"], g["opacity_logits"])
    np.testing.assert_array_equal(np.stack([d[f"f_dc_{i}"] for i in range(3)], 1), g["sh"][:, 0])
    for n in ("nx", "ny", "nz"):
        assert (d[n] == 0).all()


def test_degree1_f_rest_is_channel_major(tmp_path):
    n = 4
    g = random_gaussians(n, 1)
    # sh[i, k, c] = 100*i + 10*k + c so every coefficient is recognisable.
    i, k, c = np.meshgrid(np.arange(n), np.arange(4), np.arange(3), indexing="ij")
    g["sh"] = (100 * i + 10 * k + c).astype(np.float32)
    path = tmp_path / "f.ply"
    write_gaussians_ply(path, **g)
    v = PlyData.read(str(path))["vertex"]
    names = [p.name for p in v.properties]
    assert names[6:18] == ["f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{j}" for j in range(9)]
    assert names[18:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    d = v.data
    # Inria order: f_rest_{c*(K-1) + (k-1)}: all R coefficients (k = 1..3), then G, then B.
    for gi in range(n):
        rest = [d[f"f_rest_{j}"][gi] for j in range(9)]
        expected = [100 * gi + 10 * kk + cc for cc in range(3) for kk in range(1, 4)]
        assert rest == expected
        assert [d[f"f_dc_{cc}"][gi] for cc in range(3)] == [100 * gi + cc for cc in range(3)]
    back = read_gaussians_ply(path)
    np.testing.assert_array_equal(back["sh"], g["sh"])


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_no_reserved_property_names(degree):
    names = ply_property_names(degree)
    assert not RESERVED & set(names)
    assert len(names) == len(set(names)) == 17 + 3 * ((degree + 1) ** 2 - 1)


def test_bad_shapes_raise(tmp_path):
    g = random_gaussians(6, 0)
    path = tmp_path / "f.ply"
    bad = [
        dict(sh=np.zeros((6, 3), np.float32)),             # not [N,K,3]
        dict(sh=np.zeros((5, 1, 3), np.float32)),          # wrong N
        dict(sh=np.zeros((6, 2, 3), np.float32)),          # K not a square
        dict(sh=np.zeros((6, 1, 4), np.float32)),          # not RGB
        dict(quats=np.zeros((6, 3), np.float32)),
        dict(quats=np.zeros((5, 4), np.float32)),
        dict(log_scales=np.zeros((6, 4), np.float32)),
        dict(opacity_logits=np.zeros((6, 1), np.float32)),
        dict(opacity_logits=np.zeros(7, np.float32)),
    ]
    for change in bad:
        with pytest.raises(ValueError):
            write_gaussians_ply(path, **{**g, **change})
        assert not path.exists()


def test_reading_non_3dgs_ply_raises(tmp_path):
    path = tmp_path / "mesh.ply"
    verts = np.array([(0.0, 0.0, 0.0, 255, 0, 0), (1.0, 0.0, 0.0, 0, 255, 0)],
                     dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    PlyData([PlyElement.describe(verts, "vertex")]).write(str(path))
    with pytest.raises(ValueError, match="not a 3DGS PLY"):
        read_gaussians_ply(path)
    path2 = tmp_path / "nov.ply"
    PlyData([PlyElement.describe(np.zeros(2, dtype=[("a", "f4")]), "face_data")]).write(str(path2))
    with pytest.raises(ValueError, match="vertex"):
        read_gaussians_ply(path2)


def test_sh_c0_constant():
    assert SH_C0 == pytest.approx(0.5 / np.sqrt(np.pi), rel=1e-12)
