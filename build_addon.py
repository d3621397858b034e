#!/usr/bin/env python
"""Build the gen4d Blender extension zip(s).

Stages ``blender_addon/`` + ``protocol/`` (as a subpackage) + pyzmq wheels under
``wheels/`` into ``dist/stage/``, writes the ``wheels``/``platforms`` lists of
``blender_manifest.toml`` to match the wheels actually bundled, then builds and validates
with Blender's own ``blender_ext.py`` (shipped in the bpy wheel, or pass
``--blender-ext``). Wheels come from ``pip download --only-binary=:all: --no-deps`` and
are cached in ``dist/wheel_cache/``.

Examples::

    python build_addon.py                      # every platform, one zip per platform
    python build_addon.py --platform linux-x64 # dist/gen4d-0.1.0-linux-x64.zip
    python build_addon.py --universal          # also one zip with every wheel

Exit status is non-zero (with the validator's message) if anything is invalid.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PYZMQ = "pyzmq==27.3.0"
#: Pure-Python wheels every zip carries (the importer reads and writes PLY with plyfile).
PURE_WHEELS = ("plyfile==1.1.3",)
#: Blender platform -> pip platform tag of the pyzmq wheels to bundle.
PLATFORM_TAGS = {
    "windows-x64": "win_amd64",
    "macos-arm64": "macosx_11_0_universal2",
    "macos-x64": "macosx_11_0_universal2",
    "linux-x64": "manylinux_2_28_x86_64",
    "linux-arm64": "manylinux_2_28_aarch64",
}
#: cp311 for Blender 4.2–5.0 (Python 3.11); the cp312-abi3 build for Python ≥ 3.12 (5.1+).
PYTHON_VERSIONS = ("3.11", "3.12")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache")


def find_blender_ext() -> Path:
    """Locate ``blender_ext.py`` inside the installed bpy module.

    Raises:
        FileNotFoundError: bpy is not installed in this interpreter.
    """
    import importlib.util
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("bpy is not installed; pass --blender-ext PATH")
    hits = sorted(Path(list(spec.submodule_search_locations)[0]).glob(
        "*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not hits:
        raise FileNotFoundError("blender_ext.py not found in the bpy module; pass --blender-ext PATH")
    return hits[-1]


def download_pure_wheels(cache: Path) -> list[Path]:
    """pip-download :data:`PURE_WHEELS` (``py3-none-any``) into ``cache``; return their paths.

    Raises:
        RuntimeError: pip failed (offline and not cached).
    """
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for requirement in PURE_WHEELS:
        name, version = requirement.split("==")
        hits = sorted(cache.glob(f"{name}-{version}-py3-none-any.whl"))
        if not hits:
            cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
                   "--only-binary=:all:", "--no-deps", "--dest", str(cache), requirement]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"pip download failed for {requirement}:\n{proc.stderr}")
            hits = sorted(cache.glob(f"{name}-{version}-py3-none-any.whl"))
        if not hits:
            raise RuntimeError(f"no {requirement} wheel in {cache}")
        out.append(hits[-1])
    return out


def download_wheels(platforms: list[str], cache: Path) -> list[Path]:
    """pip-download the pyzmq wheels for ``platforms`` into ``cache``; return the wheel paths.

    Raises:
        RuntimeError: pip failed (offline and not cached, or no such wheel).
    """
    cache.mkdir(parents=True, exist_ok=True)
    wheels: list[Path] = []
    for tag in sorted({PLATFORM_TAGS[p] for p in platforms}):
        for pyver in PYTHON_VERSIONS:
            before = set(cache.glob("*.whl"))
            cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
                   "--only-binary=:all:", "--no-deps", "--platform", tag, "--python-version", pyver,
                   "--dest", str(cache), PYZMQ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"pip download failed for {tag} / Python {pyver}:\n{proc.stderr}")
            wheels.extend(_match_wheel(cache, tag, pyver, before))
    return sorted(set(wheels))


def _match_wheel(cache: Path, tag: str, pyver: str, before: set) -> list[Path]:
    """The cached wheel that pip picked for (tag, pyver) (pip prints nothing useful when cached)."""
    arch = tag.split("_", 3)[-1] if tag.startswith("manylinux") else tag.rsplit("_", 1)[-1]
    family = tag.split("_")[0]
    py = "cp" + pyver.replace(".", "")
    version = PYZMQ.split("==")[1]
    hits = [w for w in cache.glob(f"pyzmq-{version}-*.whl")
            if family in w.name and w.name.endswith(f"{arch}.whl")
            and (f"-{py}-{py}-" in w.name or (pyver != "3.11" and "-abi3-" in w.name))]
    if not hits:
        raise RuntimeError(f"no pyzmq wheel for {tag} / Python {pyver} in {cache}")
    return sorted(hits)[-1:]


def write_manifest(path: Path, wheels: list[Path], platforms: list[str]) -> None:
    """Rewrite the top-level ``wheels`` and ``platforms`` keys of a staged manifest
    (inserted before the first ``[table]``, so they stay top-level).

    Args:
        path: the staged ``blender_manifest.toml``, rewritten in place.
        wheels: the wheel files the stage carries under ``wheels/``.
        platforms: the Blender platform ids the zip is for.
    """
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"(?ms)^(wheels|platforms)\s*=\s*\[.*?\]\s*\n", "", text)
    lines = "".join(f'  "./wheels/{w.name}",\n' for w in wheels)
    plats = ", ".join(f'"{p}"' for p in platforms)
    block = f"platforms = [{plats}]\n\nwheels = [\n{lines}]\n\n"
    m = re.search(r"(?m)^\[", text)
    at = m.start() if m else len(text)
    path.write_text(text[:at] + block + text[at:], encoding="utf-8")


def stage(stage_dir: Path, wheels: list[Path], platforms: list[str]) -> Path:
    """Copy the add-on, ``protocol/`` and the wheels into a fresh ``stage_dir``.

    Args:
        stage_dir: the folder to (re)create.
        wheels: wheel files to put under ``wheels/`` and list in the manifest.
        platforms: the Blender platform ids written to the manifest.

    Returns:
        ``stage_dir``.
    """
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    shutil.copytree(ROOT / "blender_addon", stage_dir, ignore=IGNORE)
    shutil.copytree(ROOT / "protocol", stage_dir / "protocol", ignore=IGNORE)
    (stage_dir / "wheels").mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, stage_dir / "wheels" / wheel.name)
    write_manifest(stage_dir / "blender_manifest.toml", wheels, platforms)
    return stage_dir


def run_ext(blender_ext: Path, *args: str) -> str:
    """Run ``blender_ext.py`` with ``args`` under this interpreter.

    Returns:
        Its combined output.

    Raises:
        RuntimeError: it exited non-zero or reported an error (with its output).
    """
    proc = subprocess.run([sys.executable, str(blender_ext), *args], capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "error" in out.lower():
        raise RuntimeError(f"blender_ext {' '.join(args)} failed:\n{out}")
    return out


def manifest_version(path: Path) -> str:
    """The ``version`` of the manifest at ``path``.

    Raises:
        RuntimeError: the manifest has no ``version`` line.
    """
    m = re.search(r'(?m)^version\s*=\s*"([^"]+)"', path.read_text(encoding="utf-8"))
    if not m:
        raise RuntimeError(f"no version in {path}")
    return m.group(1)


def build(platforms: list[str], out_dir: Path, universal: bool = False,
          blender_ext: Path | None = None, wheel_cache: Path | None = None) -> list[Path]:
    """Build and validate the zips (one staging per platform); returns their paths.

    One zip per platform (``gen4d-<version>-<platform>.zip``), plus
    ``gen4d-<version>.zip`` with every wheel when ``universal``.

    Raises:
        RuntimeError: a download, build or validation failed.
    """
    blender_ext = blender_ext or find_blender_ext()
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = wheel_cache or out_dir / "wheel_cache"
    pure = download_pure_wheels(cache)
    wheels = download_wheels(platforms, cache) + pure
    zips = []
    # One staging per platform, so each zip's manifest lists exactly the wheels it carries
    # (blender_ext's --split-platforms filters the files but keeps every manifest entry).
    for platform in platforms:
        mine = [w for pyver in PYTHON_VERSIONS for w in _match_wheel(cache, PLATFORM_TAGS[platform], pyver, set())]
        mine += pure
        staged = stage(out_dir / "stage" / platform / "gen4d", mine, [platform])
        version = manifest_version(staged / "blender_manifest.toml")
        run_ext(blender_ext, "validate", str(staged))
        zips.append(out_dir / f"gen4d-{version}-{platform}.zip")
        run_ext(blender_ext, "build", "--source-dir", str(staged), "--output-filepath", str(zips[-1]))
    if universal:
        staged = stage(out_dir / "stage" / "universal" / "gen4d", wheels, platforms)
        zips.append(out_dir / f"gen4d-{version}.zip")
        run_ext(blender_ext, "build", "--source-dir", str(staged), "--output-filepath", str(zips[-1]))
    for z in zips:
        if not z.exists():
            raise RuntimeError(f"expected {z} was not built (have: {sorted(p.name for p in out_dir.glob('*.zip'))})")
        run_ext(blender_ext, "validate", str(z))
    return zips


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORM_TAGS),
                        help="Blender platform to build for (repeatable; default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    parser.add_argument("--universal", action="store_true", help="also build one zip with every wheel")
    parser.add_argument("--blender-ext", type=Path, help="path of Blender's blender_ext.py")
    parser.add_argument("--wheel-cache", type=Path, help="wheel download cache (default <out>/wheel_cache)")
    args = parser.parse_args(argv)
    platforms = sorted(set(args.platform or PLATFORM_TAGS))
    try:
        zips = build(platforms, args.out.resolve(), args.universal, args.blender_ext, args.wheel_cache)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"build_addon: {exc}", file=sys.stderr)
        return 1
    for z in zips:
        print(z)
    return 0


if __name__ == "__main__":
    sys.exit(main())
