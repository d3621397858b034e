"""The project's own files describe it consistently: pyproject.toml agrees with the add-on's
manifest, its dependencies are requirements.txt, and no source points outside the
repository for its design (docs/design.md is the design)."""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_matches_the_addon_manifest_and_requirements():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    manifest = tomllib.loads((REPO / "blender_addon" / "blender_manifest.toml").read_text())
    assert project["project"]["version"] == manifest["version"]
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    assert project["project"]["requires-python"] == "==3.11.*"
    assert "slow" in project["tool"]["pytest"]["ini_options"]["markers"][0]


def test_no_source_cites_a_design_file_outside_the_repository():
    offenders = []
    for folder in ("protocol", "backend", "blender_addon", "samples", "scripts", "benchmarks", "tests"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for m in re.finditer(r"(?<!docs/)DESIGN\.md|\.\./shared/DESIGN", text):
                offenders.append(f"{path.relative_to(REPO)}:{text[:m.start()].count(chr(10)) + 1}")
    assert not offenders, offenders


def test_docs_design_has_the_sections_the_code_cites():
    design = (REPO / "docs" / "design.md").read_text()
    headings = set(re.findall(r"^#+ (.+)$", design, flags=re.M))
    cited = set()
    for path in list((REPO / "backend").rglob("*.py")) + list((REPO / "protocol").rglob("*.py")) + \
            list((REPO / "samples").rglob("*.py")) + list((REPO / "tests").rglob("*.py")):
        found = re.findall(r'docs/design\.md,? "([^"]+)"', path.read_text(encoding="utf-8"))
        cited |= {" ".join(c.split()) for c in found}  # a citation may wrap across docstring lines
    assert cited, "no source cites docs/design.md"
    assert cited <= headings, sorted(cited - headings)
