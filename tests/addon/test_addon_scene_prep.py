""""Prepare Scene for Splats" (blender_addon/scene_prep.py): applied only on request, it
changes exactly the settings it reports, all of them from its list, and the importer
alone changes no scene setting (see bpy_scripts/scene_prep_checks.py)."""

import importlib.util

import pytest

from _run import BLENDERS, run_bpy_script

if importlib.util.find_spec("bpy") is None:  # do not import bpy in the pytest process
    pytest.skip("needs the bpy module", allow_module_level=True)


@pytest.fixture(scope="module", params=BLENDERS)
def res(request, tmp_path_factory):
    return run_bpy_script("scene_prep_checks.py", tmp_path_factory.mktemp("prep"), blender=request.param)


def test_importer_changes_no_scene_setting(res):
    assert res["import_changed"] == []


def test_operator_changes_exactly_what_it_reports(res):
    assert res["status"] == ["FINISHED"]
    reported = sorted(text.removeprefix("gen4d: ").split(":")[0] for _, text in res["reports"])
    assert reported == res["prepare_changed"]
    assert set(reported) <= set(res["recommended"])
    # A factory scene: Cycles' 8 transparent bounces, 4096 samples, AgX view, opaque film.
    assert {"cycles.transparent_max_bounces", "cycles.samples", "view_settings.view_transform",
            "render.film_transparent"} <= set(reported)
    assert all(kind == "INFO" for kind, _ in res["reports"])


def test_second_run_has_nothing_to_change(res):
    assert res["second_changed"] == []
    assert len(res["second_reports"]) == 1 and "already" in res["second_reports"][0][1]


def test_registered_operator_is_undoable_and_applies_the_same(res):
    assert res["ops_status"] == ["FINISHED"]
    assert res["ops_changed"] == res["prepare_changed"]
    assert {"REGISTER", "UNDO"} <= set(res["bl_options"])
