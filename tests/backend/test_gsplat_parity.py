"""The CPU rasterizers against gsplat 1.5.3's CUDA rasterizer, replayed from a recorded fixture.

``tests/fixtures/gsplat_parity.npz`` was written by ``scripts/make_gsplat_fixture.py`` on an
NVIDIA H100 (gsplat 1.5.3, torch 2.11 cu130): the inputs, gsplat's images, alphas, radii,
2D means, depths, and the gradients of ``Σ colors·v_colors + Σ alphas·v_alphas``. Here the
same inputs go through both CPU implementations on CPU tensors, and every output and
gradient is compared with what gsplat produced. Tolerances are set from the float32
differences between a CUDA and a CPU evaluation of the same formulas (fused multiply-adds,
``exp`` implementations, different summation orders), far below what any formula change
(a wrong eps2d blur, a missing 1/255 cut, a different ``3σ`` radius, a swapped quaternion
convention) produces; ``test_the_comparison_detects_a_formula_change`` checks the last claim.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.render.numba_rasterizer import rasterize_numba
from backend.render.torch_rasterizer import rasterize_torch

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "gsplat_parity.npz"
IMPLEMENTATIONS = {"torch": rasterize_torch, "numba": rasterize_numba}
INPUTS = ("means", "quats", "scales", "opacities", "colors")


def load_case(name: str) -> dict[str, np.ndarray]:
    data = np.load(FIXTURE)
    prefix = f"{name}/"
    return {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}


def meta() -> dict:
    return json.loads(np.load(FIXTURE)["meta"].tobytes().decode())


def replay(impl, case: dict[str, np.ndarray], **overrides):
    """Run ``impl`` on the fixture's inputs; return (colors, alphas, info, grads) as numpy."""
    m = meta()
    leaves = {k: torch.tensor(case[k], requires_grad=True) for k in INPUTS}
    args = {**leaves, **{k: torch.tensor(case[k]) for k in ("viewmats", "Ks", "backgrounds")}}
    kwargs = dict(eps2d=m["eps2d"], near_plane=m["near_plane"])
    kwargs.update(overrides)
    colors, alphas, info = impl(args["means"], args["quats"], args["scales"], args["opacities"],
                                args["colors"], args["viewmats"], args["Ks"], m["width"], m["height"],
                                backgrounds=args["backgrounds"], **kwargs)
    info["means2d"].retain_grad()
    loss = (colors * torch.tensor(case["v_colors"])).sum() + (alphas * torch.tensor(case["v_alphas"])).sum()
    loss.backward()
    grads = {k: leaves[k].grad.numpy() for k in INPUTS}
    grads["means2d"] = info["means2d"].grad.numpy()
    return colors.detach().numpy(), alphas.detach().numpy(), info, grads


def assert_close_rel(actual, expected, rtol, what):
    """``max |a − e| ≤ rtol · max |e|`` (gradients span orders of magnitude across Gaussians)."""
    scale = float(np.abs(expected).max())
    err = float(np.abs(actual - expected).max())
    assert err <= rtol * scale + 1e-7, f"{what}: max error {err:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("impl_name", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("case_name", ["scene", "edge"])
def test_cpu_rasterizer_matches_gsplat_cuda(impl_name, case_name):
    case = load_case(case_name)
    colors, alphas, info, grads = replay(IMPLEMENTATIONS[impl_name], case)

    # The recording is not trivial: many Gaussians visible, and both cases cover pixels
    # while leaving background.
    visible = (case["radii"] > 0).all(-1)
    assert visible.sum() > 0.5 * visible.size if case_name == "scene" else visible.sum() > 100
    assert 0.05 < case["out_alphas"].mean() < 0.95

    np.testing.assert_array_equal(info["radii"].numpy() > 0, case["radii"] > 0)
    assert np.abs(info["radii"].numpy().astype(np.int64) - case["radii"]).max() <= 1
    vis = visible
    np.testing.assert_allclose(info["means2d"].detach().numpy()[vis], case["means2d"][vis], atol=2e-3)
    np.testing.assert_allclose(info["depths"].detach().numpy()[vis], case["depths"][vis], rtol=1e-5, atol=1e-6)
    assert np.abs(colors - case["out_colors"]).max() < 5e-4
    assert np.abs(alphas - case["out_alphas"]).max() < 5e-4
    for name in (*INPUTS, "means2d"):
        assert_close_rel(grads[name], case[f"grad_{name}"], 5e-3, f"d loss / d {name}")


def test_the_comparison_detects_a_formula_change():
    """A 0.3 → 0.1 px² blur (a plausible slip) fails the image tolerance by a wide margin."""
    case = load_case("scene")
    colors, _, _, _ = replay(rasterize_numba, case, eps2d=0.1)
    assert np.abs(colors - case["out_colors"]).max() > 50 * 5e-4


def test_fixture_provenance():
    m = meta()
    assert m["gsplat"] == "1.5.3" and "NVIDIA" in m["device"]
