"""protocol.formats.ply: the Gaussian PLY layout and value conventions (no file I/O)."""

import numpy as np
import pytest
import torch

from protocol.formats import ply


def test_property_names_follow_the_inria_layout():
    assert ply.ply_property_names(0) == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                                         "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    names = ply.ply_property_names(2)
    assert names[9:33] == [f"f_rest_{i}" for i in range(24)] and names[33] == "opacity"
    assert len(ply.ply_property_names(4)) == 17 + 3 * 24
    assert set(ply.REQUIRED_PROPERTIES) <= set(names) and not set(ply.NORMAL) & set(ply.REQUIRED_PROPERTIES)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_degree_raises(bad):
    with pytest.raises(ValueError, match="SH degree"):
        ply.ply_property_names(bad)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_degree_round_trips_through_property_names(degree):
    assert ply.sh_degree_from_properties(ply.ply_property_names(degree)) == degree


def test_degree_from_properties_errors_are_clear():
    with pytest.raises(ValueError, match=r"f\.ply: 10 f_rest properties is not SH degree 0-3 \(0, 9, 24 or 45\)"):
        ply.sh_degree_from_properties(["x"] + [f"f_rest_{i}" for i in range(10)], where="f.ply")
    with pytest.raises(ValueError, match="not SH degree 0-3"):
        ply.sh_degree_from_properties(ply.ply_property_names(4))
    assert ply.sh_degree_from_properties(ply.ply_property_names(4), max_degree=None) == 4
    with pytest.raises(ValueError, match="no SH degree"):
        ply.sh_degree_from_rest_count(10, max_degree=None)


def test_f_rest_is_channel_major_and_pack_agrees_with_names():
    n, degree = 3, 2
    k = ply.sh_coefficient_count(degree)
    i, kk, c = np.meshgrid(np.arange(n), np.arange(k), np.arange(3), indexing="ij")
    sh = (100 * i + 10 * kk + c).astype(np.float32)  # recognisable coefficients
    rest = ply.pack_sh_rest(sh)
    assert rest.shape == (n, 3 * (k - 1))
    column = {f"f_rest_{j}": rest[:, j] for j in range(rest.shape[1])}
    for basis in range(1, k):
        for channel, name in enumerate(ply.f_rest_names(basis, degree)):
            np.testing.assert_array_equal(column[name], sh[:, basis, channel])
    assert ply.f_rest_names(1, 1) == ("f_rest_0", "f_rest_3", "f_rest_6")
    np.testing.assert_array_equal(ply.unpack_sh_rest(rest), sh[:, 1:])
    with pytest.raises(ValueError, match="basis index"):
        ply.f_rest_names(4, 1)
    with pytest.raises(ValueError):
        ply.unpack_sh_rest(np.zeros((2, 4)))
    with pytest.raises(ValueError):
        ply.pack_sh_rest(np.zeros((2, 4)))


def test_sh0_colour_conversions_on_numpy_torch_and_floats():
    assert ply.SH_C0 == pytest.approx(0.5 / np.sqrt(np.pi), rel=1e-12)
    x = np.array([-1.0, 0.0, 2.0], np.float32)
    rgb = ply.sh0_to_rgb(x)
    assert rgb.dtype == np.float32
    np.testing.assert_array_equal(rgb, np.float32(0.5) + np.float32(ply.SH_C0) * x)
    np.testing.assert_allclose(ply.rgb_to_sh0(rgb), x, atol=1e-6)
    t = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(ply.sh0_to_rgb(ply.rgb_to_sh0(t)), t)
    assert ply.sh0_to_rgb(0.0) == 0.5


def test_activations():
    logits = np.array([-30.0, 0.0, 30.0], np.float32)
    alpha = ply.opacity_from_logit(logits)
    assert alpha.dtype == np.float32
    np.testing.assert_allclose(alpha, [0.0, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(ply.scale_from_log(np.log(np.array([0.01, 2.0], np.float32))), [0.01, 2.0], rtol=1e-6)


def test_quaternions_normalize_and_zero_becomes_identity():
    q = np.array([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    out = ply.normalize_quaternions(q)
    assert out.dtype == np.float32 and out is not q
    np.testing.assert_allclose(out, [[1, 0, 0, 0], [1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]], atol=1e-7)
    assert q[0, 0] == 2.0  # input untouched
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        ply.normalize_quaternions(np.zeros((3, 3)))
