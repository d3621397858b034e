"""The declared 4D model interface (backend.gaussians.model.Gaussians4D): both models
conform to it, the factory builds each representation, and the layering holds."""

import ast
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from backend.gaussians.control_points import ControlPointGaussians4D
from backend.gaussians.hexplane import HexPlaneGaussians4D
from backend.gaussians.model import Gaussians4D
from backend.gaussians.model_io import MODEL_KINDS, build_gaussians4d, load_gaussians4d
from backend.gaussians.trajectories import TrajectoryGaussians4D, basis_for_times, static_basis
from protocol.config import ControlPointConfig, HexPlaneConfig, ModelConfig, OptimizationConfig, TrajectoryConfig

ROOT = Path(__file__).resolve().parents[2]
SMALL_HEX = HexPlaneConfig(resolution=[4, 4, 4, 3], multires=[1], feature_dim=4, mlp_width=8)


def _inputs(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    quats = torch.randn(n, 4, generator=g)
    return (torch.randn(n, 3, generator=g), quats, torch.randn(n, 3, generator=g) - 3, torch.randn(n, generator=g),
            torch.randn(n, 1, 3, generator=g))


def _models():
    return {"trajectory": TrajectoryGaussians4D(*_inputs(), TrajectoryConfig()),
            "static": TrajectoryGaussians4D(*_inputs(), static_basis(TrajectoryConfig())),
            "hexplane": HexPlaneGaussians4D(*_inputs(), SMALL_HEX),
            "control_points": ControlPointGaussians4D(*_inputs(), ControlPointConfig(n_control=4, mlp_width=8,
                                                                                   mlp_depth=2))}


@pytest.mark.parametrize("name", ["trajectory", "static", "hexplane", "control_points"])
def test_models_conform_to_the_interface(name):
    model = _models()[name]
    assert isinstance(model, Gaussians4D) and MODEL_KINDS[model.kind] is type(model)
    n = model.num_gaussians
    assert n == 7 and all(p.shape[0] == n for p in model.params.values())
    g = model.at(torch.tensor([0.0, 0.4, 1.0]))
    assert g.means.shape == (3, n, 3) and g.quats.shape == (3, n, 4) and g.log_scales.shape == (3, n, 3)
    assert g.opacity_logits.shape == (3, n) and g.sh.shape == (3, n, 1, 3)
    # Learning rates: one per per-Gaussian tensor, in params order; position-like ones scale with the radius.
    opt = OptimizationConfig()
    lrs = model.learning_rates(opt, 2.0)
    assert list(lrs) == list(model.params)
    assert lrs["means"] == pytest.approx(opt.lr_means * 2.0) and lrs["scales"] == opt.lr_scales
    if "motion" in lrs:
        assert lrs["motion"] == pytest.approx(opt.lr_motion * 2.0)
    # Every parameter is either per-Gaussian or in exactly one field group.
    groups = model.field_param_groups(opt)
    field_ids = [id(p) for grp in groups for p in grp["params"]]
    assert len(field_ids) == len(set(field_ids))
    assert set(field_ids) | {id(p) for p in model.params.values()} == {id(p) for p in model.parameters()}
    # save / load through the registry gives the same Gaussians.
    back = load_gaussians4d(model.state())
    assert type(back) is type(model)
    torch.testing.assert_close(back.at(torch.tensor([0.3])).means, model.at(torch.tensor([0.3])).means)


def test_trajectory_hooks_are_neutral_and_static_means_static():
    models = _models()
    traj, static = models["trajectory"], models["static"]
    assert traj.field_param_groups(OptimizationConfig()) == [] and traj.regularization() is None
    traj.on_step(0, 10)  # no schedule: nothing changes
    assert not traj.is_static and static.is_static and "motion" not in static.params


def test_hexplane_field_groups_regularization_and_coarse_phase():
    model = _models()["hexplane"]
    opt = OptimizationConfig(lr_hexplane_planes=0.5, lr_hexplane_mlp=0.25)
    planes, mlp = model.field_param_groups(opt)
    assert planes["lr"] == 0.5 and len(planes["params"]) == 6 and mlp["lr"] == 0.25
    # Coarse phase: the first int(total * coarse_fraction) steps are static, without regularizer.
    total = 10
    coarse = int(total * SMALL_HEX.coarse_fraction)
    model.on_step(coarse - 1, total)
    assert model.is_static and model.regularization() is None
    model.on_step(coarse, total)
    assert not model.is_static
    torch.testing.assert_close(model.regularization(), model.regularization_loss())


def test_learning_rates_refuse_an_unknown_parameter():
    model = _models()["trajectory"]
    model.params["extra"] = torch.nn.Parameter(torch.zeros(model.num_gaussians))
    with pytest.raises(ValueError, match="extra"):
        model.learning_rates(OptimizationConfig(), 1.0)


def test_interface_is_abstract():
    with pytest.raises(TypeError):
        Gaussians4D()


def test_factory_builds_each_representation():
    inputs = _inputs()
    traj = build_gaussians4d(ModelConfig(), *inputs, n_times=3)
    # Three times pin down only two position functions: the Fourier terms go first.
    assert isinstance(traj, TrajectoryGaussians4D) and asdict(traj.config) == asdict(
        TrajectoryConfig(poly_degree=2, n_fourier=0, rot_degree=1))
    assert build_gaussians4d(ModelConfig(representation="static"), *inputs).is_static
    hexm = build_gaussians4d(ModelConfig(representation="hexplane", hexplane=SMALL_HEX), *inputs)
    assert isinstance(hexm, HexPlaneGaussians4D) and hexm.config == SMALL_HEX
    with pytest.raises(ValueError, match="representation"):
        build_gaussians4d(ModelConfig(representation="nerf"), *inputs)


def test_basis_for_times_cuts_fourier_first():
    cfg = TrajectoryConfig(poly_degree=3, n_fourier=2, rot_degree=1, sh_degree=1)
    assert basis_for_times(cfg, None) == cfg
    assert basis_for_times(cfg, 16) == cfg
    assert basis_for_times(cfg, 6) == TrajectoryConfig(3, 1, 1, 1)
    assert basis_for_times(cfg, 1) == TrajectoryConfig(0, 0, 0, 1)


def test_old_hexplane_state_without_coarse_fraction_loads():
    model = _models()["hexplane"]
    state = model.state()
    del state["config"]["coarse_fraction"]
    back = load_gaussians4d(state)
    assert back.config.coarse_fraction == HexPlaneConfig().coarse_fraction


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["gaussians", "render", "optim"])
def test_model_render_optim_never_import_pipeline(package):
    for path in sorted((ROOT / "backend" / package).glob("*.py")):
        bad = {m for m in _imports(path) if m.startswith(("backend.pipeline", "backend.server", "backend.worker",
                                                          "backend.jobs"))}
        assert not bad, (path.name, bad)
    if package == "gaussians":
        for path in (ROOT / "backend" / "gaussians").glob("*.py"):
            assert not {m for m in _imports(path) if m.startswith("backend.render")}, path.name
    if package == "render":
        assert not {m for m in _imports(ROOT / "backend/render/rasterize.py") if m.startswith("backend.gaussians")}
