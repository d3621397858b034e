"""gen4d backend command line: ``python -m backend serve | run | render | models``.

- ``serve``: the ZeroMQ job server (see :mod:`backend.server`).
- ``run``: one job without a server, through the same :func:`run_job` code path.
- ``render``: render a result at the cameras and times of a transforms file.
- ``models list | download | verify``: the generation models (:mod:`backend.models`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path


def _parse_option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def _options(pairs) -> dict:
    """``--option`` pairs as one options dict; a key given twice is an error."""
    out: dict = {}
    for key, value in pairs or []:
        if key in out:
            raise SystemExit(f"error [invalid_option]: --option {key} is given twice")
        out[key] = value
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    from backend.server import ServeRefused, serve

    options = {"address": args.ray_address} if args.executor == "ray" else {}
    if args.ray_address and args.executor != "ray":
        print("gen4d backend: --ray-address needs --executor ray", file=sys.stderr)
        return 2
    try:
        serve(address=args.address, data_dir=args.data_dir, curve=args.curve, executor=args.executor,
              executor_options=options)
    except (OSError, ServeRefused, ImportError, ValueError) as exc:
        print(f"gen4d backend: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    from backend.server import default_data_dir
    from backend.users import UserError, Users, add_user, remove_user

    data_dir = args.data_dir or default_data_dir()
    try:
        if args.action == "add":
            if not args.name:
                raise UserError("name the user: python -m backend users add NAME")
            creds = add_user(data_dir, args.name, admin=args.admin, credentials_path=args.credentials)
            print(f"added user {args.name}{' (admin)' if args.admin else ''}.\n"
                  f"Give the artist this credentials file (it holds their keys; keep it private):\n"
                  f"  {creds['path']}\n"
                  f"In Blender: Preferences > Add-ons > gen4d > Credentials File, and the backend's address.")
        elif args.action == "remove":
            if not args.name:
                raise UserError("name the user: python -m backend users remove NAME")
            remove_user(data_dir, args.name)
            print(f"removed user {args.name}; their jobs stay (visible to admins)")
        else:
            users = Users(data_dir, own_key=b"-")
            for name in users.names():
                print(f"{name}{'  (admin)' if users.is_admin(name) else ''}")
            if not users.names():
                print(f"no users in {data_dir} (only the backend's own key, gen4d.key)")
    except UserError as exc:
        print(f"gen4d backend: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from backend.errors import JobCancelled, JobError
    from backend.pipeline.context import JobContext
    from backend.pipeline.runner import run_job
    from protocol.errors import InvalidOptionError
    from protocol.job_spec import validate_job_spec

    bars: dict[str, tqdm] = {}

    def on_progress(event) -> None:
        bar = bars.get(event.stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[event.stage] = tqdm(total=event.total, desc=event.stage, unit="step", file=sys.stderr)
        bar.n = event.step
        if event.loss is not None:
            bar.set_postfix(loss=f"{event.loss:.4f}", refresh=False)
        bar.refresh()

    spec = {"job_type": "footage", "preset": args.preset, "options": _options(args.option)}
    input_dir = args.input
    if args.video or args.image:
        kind, path = ("video", Path(args.video)) if args.video else ("image", Path(args.image))
        spec.update({"job_type": kind, kind: path.name, "models": _model_overrides(args.model)})
        input_dir = str(path.parent)
    elif args.orbital_video:
        path = Path(args.orbital_video)
        spec.update({"job_type": "orbital", "video": path.name, "orbit": dict(args.orbit or [])})
        input_dir = str(path.parent)
    elif args.prompt is not None:
        spec.update({"job_type": "prompt", "prompt": args.prompt, "models": _model_overrides(args.model)})
        input_dir = args.out
    if args.frames:
        spec["frame_count"] = args.frames
    if args.fps:
        spec["fps"] = args.fps
    if args.preview:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    try:  # the same check the server makes at submit, before any work starts
        validate_job_spec(spec)
    except InvalidOptionError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    ctx = JobContext(on_progress=on_progress,
                     on_preview=(lambda png: (Path(args.out) / "preview_latest.png").write_bytes(png))
                     if args.preview else (lambda png: None))
    try:
        manifest = run_job(spec, Path(input_dir), Path(args.out), ctx)
    except JobError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except (JobCancelled, KeyboardInterrupt):
        print("cancelled", file=sys.stderr)
        return 130
    finally:
        for bar in bars.values():
            bar.close()
    print(f"wrote {manifest['frame_count']} frames x {manifest['gaussian_count']} Gaussians to {args.out}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from backend.errors import JobError
    from backend.pipeline.render_result import render_result_at_cameras

    try:
        written = render_result_at_cameras(Path(args.result), Path(args.cameras), Path(args.out))
    except (JobError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} images to {args.out}")
    return 0


def _model_overrides(pairs) -> dict[str, str]:
    return {key: str(value) for key, value in (pairs or [])}


def cmd_models(args: argparse.Namespace) -> int:
    from backend.errors import JobError
    from backend.models import registry

    overrides = _model_overrides(args.model)
    roles = args.roles or list(registry.ROLES)
    try:
        if args.action == "list":
            print(f"models folder: {registry.models_dir()}  (set ${registry.MODELS_DIR_ENV} to change)")
            print(f"{'role':19s} {'present':8s} {'size':>8s}  source")
            for role in roles:
                r = registry.resolve(role, overrides)
                spec = registry.ROLES[role]
                size = f"{registry.folder_size_gb(r.path):.2f} GB" if r.present else f"~{spec.download_gb:g} GB"
                flag = "partial" if r.incomplete else "yes" if r.present else ("no (opt)" if spec.optional else "no")
                print(f"{role:19s} {flag:8s} {size:>8s}  {r.source}  [{spec.license}]")
                print(f"{'':19s} {spec.purpose}")
            return 0
        if args.action == "download":
            return _download_roles(roles, overrides)
        from backend.models.architecture_check import check_architecture

        failed = 0
        for role in roles:  # verify
            try:
                path = registry.require([role], overrides)[role].path
                reports = check_architecture(role, path)
                registry.load(role, overrides)
                keys = sum(r.config_keys for r in reports)
                print(f"{role}: ok ({path}; {len(reports)} components, {sum(r.tensors for r in reports)} tensor "
                      f"shapes, " + (f"{keys} config keys checked against the published architecture)" if keys
                                     else "config keys not compared: no published architecture)"))
            except JobError as exc:
                failed += 1
                print(f"{role}: FAILED [{exc.code}] {exc.message}", file=sys.stderr)
        return 1 if failed else 0
    except JobError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _download_roles(roles: list[str], overrides: dict[str, str]) -> int:
    """``models download``: each role file by file (huggingface_hub draws a bar per file);
    Ctrl-C stops with exit code 130 and says how to resume. Hub errors propagate as
    :class:`backend.errors.JobError`."""
    from backend.models import registry

    for role in roles:
        source = overrides.get(role, registry.ROLES[role].default_source)
        target = registry.models_dir() / role
        print(f"{role}: {source} -> {target}", flush=True)

        def on_file(event) -> None:
            where = f"  [{event.index}/{event.count}] {event.name} ({_size(event.size)})"
            if event.status == "skip":
                print(where + " already complete", flush=True)
            elif event.status == "fetch":
                print(where, flush=True)

        try:
            registry.download(role, overrides, on_file=on_file)
        except KeyboardInterrupt:
            print(f"\n{role}: interrupted. The files completed so far are kept in {target} (the file that was being "
                  f"fetched starts over); rerun `python -m backend models download {role}` to resume.",
                  file=sys.stderr)
            return 130
        print(f"{role}: complete and architecture checked ({target})", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for all subcommands."""
    from backend.executors import EXECUTORS
    from backend.server import default_data_dir
    from protocol.config import OrbitConfig
    from protocol.presets import DEFAULT_PRESET, PRESETS

    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the ZeroMQ job server")
    p.add_argument("--address", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint to bind")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"job store and key file (default $GEN4D_DATA_DIR or {default_data_dir()})")
    curve = p.add_mutually_exclusive_group()
    curve.add_argument("--curve", dest="curve", action="store_true", default=None,
                       help="require CurveZMQ also on loopback (always required off loopback)")
    curve.add_argument("--no-curve", dest="curve", action="store_false",
                       help="plain TCP; refused off loopback")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="what runs the jobs: local (one at a time in this process; default) or ray (a Ray cluster)")
    p.add_argument("--ray-address", default=None,
                   help="with --executor ray: the cluster, 'auto' (a running local head) or ray://host:10001")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("users", help="add, list or remove the users (keys) a studio backend accepts")
    p.add_argument("action", choices=("add", "list", "remove"))
    p.add_argument("name", nargs="?", help="user name (a-z 0-9 _ . -)")
    p.add_argument("--admin", action="store_true", help="the user sees and manages every user's jobs")
    p.add_argument("--credentials", type=Path, default=None,
                   help="where to write the new user's credentials file (default <data dir>/users/NAME.credentials.json)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"the backend's data folder (default $GEN4D_DATA_DIR or {default_data_dir()})")
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("run", help="run one job without a server")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="footage folder (transforms_train.json + images)")
    src.add_argument("--video", help="monocular video file: generates multi-view footage first (needs the "
                                     "multiview model: python -m backend models list)")
    src.add_argument("--image", help="one image: image -> video -> multi-view footage -> 4D")
    src.add_argument("--prompt", help="text: image -> video -> multi-view footage -> 4D")
    src.add_argument("--orbital-video", help="a video whose camera orbits the moving object (Diffusion4D "
                                             "input): each frame is one camera at one time; see --orbit")
    p.add_argument("--orbit", action="append", type=_parse_option, metavar="KEY=VALUE",
                   help="orbital video camera (protocol.config.OrbitConfig): " + ", ".join(
                       f"{f.name} ({f.default:g})" for f in fields(OrbitConfig)))
    p.add_argument("--model", action="append", type=_parse_option, metavar="ROLE=SOURCE",
                   help="use a hub id or local folder for a model role")
    p.add_argument("--out", required=True, help="result folder")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                   help="quality preset (protocol/presets.py); the device is picked automatically")
    p.add_argument("--option", action="append", type=_parse_option, metavar="KEY=VALUE",
                   help="override a reconstruction setting (protocol/config.py), e.g. "
                        "optimization.iterations=3000, model.representation=static or iterations=3000")
    p.add_argument("--frames", type=int, default=None, help="output frame count (default: input time steps)")
    p.add_argument("--fps", type=float, default=None, help="playback fps recorded in the manifest (default 24)")
    p.add_argument("--preview", action="store_true", help="keep writing preview_latest.png into --out")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("render", help="render a result at the cameras/times of a transforms file")
    p.add_argument("--result", required=True, help="result folder (manifest.json + model.pt)")
    p.add_argument("--cameras", required=True, help="transforms_*.json giving cameras and times")
    p.add_argument("--out", required=True, help="output folder; PNGs named by each frame's file_path")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("models", help="list, download or verify the generation models")
    p.add_argument("action", choices=("list", "download", "verify"))
    p.add_argument("roles", nargs="*", help="roles to act on (default: all)")
    p.add_argument("--model", action="append", type=_parse_option, metavar="ROLE=SOURCE",
                   help="use a hub id or local folder for a role, e.g. multiview=/models/zero123plus")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
