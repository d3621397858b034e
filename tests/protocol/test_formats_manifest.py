"""protocol.formats.manifest: write/read round trip, defaults of older manifests, errors."""

import json

import pytest

from protocol.formats import (FORMAT_VERSION, MANIFEST_FILE, Manifest, ManifestError, ManifestNotFoundError,
                              frame_file_name, read_manifest, write_manifest)


def _manifest(**kw):
    args = dict(frame_count=3, fps=30.0, sh_degree=1, gaussian_count=7,
                frame_files=[frame_file_name(i) for i in range(3)], model_file="model.pt",
                spec={"job_type": "footage"}, stats={"iterations": 5})
    return Manifest(**{**args, **kw})


def test_round_trip_and_file_layout(tmp_path):
    m = _manifest()
    assert m.times == [0.0, 0.5, 1.0]  # the time grid by default
    path = write_manifest(tmp_path / "result", m)
    assert path == tmp_path / "result" / MANIFEST_FILE
    text = path.read_text()
    data = json.loads(text)
    assert list(data) == ["format", "format_version", "frame_count", "fps", "times", "sh_degree",
                          "gaussian_count", "frame_files", "model_file", "image_formation", "standard_frame_files", "spec",
                          "stats"]
    assert data["format"] == "gen4d-result" and data["format_version"] == FORMAT_VERSION == 1
    assert text == json.dumps(data, indent=2)
    back = read_manifest(tmp_path / "result")
    assert back == m
    assert back.frame_paths(tmp_path) == [tmp_path / "frames" / f"frame_{i:04d}.ply" for i in range(3)]
    assert not list((tmp_path / "result").glob("*.tmp"))


def test_explicit_times_are_kept(tmp_path):
    m = _manifest(times=[0.0, 0.25, 1.0])
    write_manifest(tmp_path, m)
    assert read_manifest(tmp_path).times == [0.0, 0.25, 1.0]


def test_older_manifest_without_optional_fields_reads_with_defaults(tmp_path):
    """What samples/synthetic_result.py and early backends wrote: no times/model_file/stats."""
    old = {"format": "gen4d-result", "format_version": 1, "frame_files": ["a.ply", "b.ply", "c.ply", "d.ply"],
           "spec": None}
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    m = read_manifest(tmp_path)
    assert m.frame_count == 4 and m.times == [0.0, 1 / 3, 2 / 3, 1.0]
    assert (m.fps, m.sh_degree, m.gaussian_count, m.model_file, m.spec, m.stats) == (24.0, 0, 0, None, {}, {})
    old["times"] = []  # an empty list counts as absent
    old["fps"] = 12
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    m = read_manifest(tmp_path)
    assert m.times == [0.0, 1 / 3, 2 / 3, 1.0] and m.fps == 12.0 and isinstance(m.fps, float)


def test_single_frame_manifest(tmp_path):
    write_manifest(tmp_path, _manifest(frame_count=1, frame_files=["frames/frame_0000.ply"]))
    assert read_manifest(tmp_path).times == [0.0]


def test_missing_manifest_is_a_manifest_error_and_a_file_not_found(tmp_path):
    with pytest.raises(ManifestNotFoundError, match="manifest.json not found") as exc:
        read_manifest(tmp_path)
    assert isinstance(exc.value, ManifestError) and isinstance(exc.value, ValueError)
    assert isinstance(exc.value, FileNotFoundError)


@pytest.mark.parametrize("content,fragment", [
    ("{not json", "unreadable manifest"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"format": "something-else", "format_version": 1, "frame_files": ["a.ply"]}), "format is"),
    (json.dumps({"format": "gen4d-result", "format_version": 2, "frame_files": ["a.ply"]}),
     "unsupported format_version 2"),
    (json.dumps({"format": "gen4d-result", "frame_files": ["a.ply"]}), "unsupported format_version None"),
    (json.dumps({"format": "gen4d-result", "format_version": 1, "frame_files": []}), "frame_count"),
    (json.dumps({"format": "gen4d-result", "format_version": 1, "frame_count": 3, "frame_files": ["a.ply"]}),
     "does not match 1 frame_files"),
    (json.dumps({"format": "gen4d-result", "format_version": 1, "frame_files": ["a.ply"], "times": [0, 1]}),
     "times must list 1"),
    (json.dumps({"format": "gen4d-result", "format_version": 1, "frame_files": ["a.ply", "b.ply"],
                 "times": [0, 2]}), r"\[0, 1\]"),
    (json.dumps({"format": "gen4d-result", "format_version": 1, "frame_files": ["../a.ply"]}), "relative path"),
    (json.dumps({"format": "gen4d-result", "format_version": 1, "frame_files": ["/abs/a.ply"]}), "relative path"),
    (json.dumps({"format": "gen4d-result", "format_version": 1, "frame_files": ["a.ply"], "fps": 0}), "fps"),
    (json.dumps({"format": "gen4d-result", "format_version": 1, "frame_files": ["a.ply"], "sh_degree": "1"}),
     "sh_degree"),
])
def test_corrupt_manifests_raise_manifest_error_naming_the_file(tmp_path, content, fragment):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(ManifestError, match=fragment) as exc:
        read_manifest(tmp_path)
    assert str(tmp_path / "manifest.json") in str(exc.value)


def test_invalid_manifests_are_not_written(tmp_path):
    with pytest.raises(ManifestError, match="fps"):
        _manifest(fps=-1.0)
    m = _manifest()
    m.frame_files.append("frames/extra.ply")  # made inconsistent after construction
    with pytest.raises(ManifestError, match="frame_count"):
        write_manifest(tmp_path, m)
    assert not (tmp_path / "manifest.json").exists()
    with pytest.raises(TypeError):
        write_manifest(tmp_path, {"format": "gen4d-result"})
