"""After ``qc --fix``, reprocessing reruns only what the fix edited; undoing it does the same. Outputs of
images it excluded are left in place and listed by ``verify``."""

from __future__ import annotations

from pathlib import Path

from tests.pipeline.captures import Project, add_panoramas, add_rig_shots, record

from panopipe.catalog import Selection
from panopipe.pipeline import plan, run, verify
from panopipe.qc import run_qc


def test_plan_after_qc_fix_shows_only_the_corrected_images(project: Project, executor):
    ids = add_panoramas(project.catalog, project.root, 9)
    outlier = ids[4]
    changes = project.catalog.plan_edit(Selection(ids=(outlier,)), assign={"lat": 48.1009})  # ~55 m off
    project.catalog.apply_edit(changes, reason="a GPS glitch", author="test")
    run(project.catalog, settings=project.settings, executor=executor)
    assert len(plan(project.catalog, settings=project.settings)) == 0

    report = run_qc(project.catalog, fix=True)

    assert {c.image_id for c in report.changes} == {outlier}
    assert abs(project.catalog.get(outlier).lat - (48.1 + 4e-4)) < 2e-5  # back on the track (within 2 m)
    after = {
        (item.step, item.subject, item.reason) for item in plan(project.catalog, settings=project.settings)
    }
    assert after == {
        ("apply-metadata", f"image:{outlier}", "metadata edited"),
        ("derive", f"image:{outlier}", "metadata edited"),
        ("publish", f"image:{outlier}", "after apply-metadata"),
    }
    assert report.batch is not None
    # Undone before any run, the outputs match the restored values again: nothing to do.
    project.catalog.undo(report.batch, author="test")
    assert len(plan(project.catalog, settings=project.settings)) == 0


def test_outputs_of_excluded_images_are_left_and_listed_by_verify(project: Project, executor):
    ids = add_panoramas(project.catalog, project.root, 4)
    run(project.catalog, settings=project.settings, executor=executor)
    assert verify(project.catalog, settings=project.settings) == []
    thinned = ids[1]
    changes = project.catalog.plan_edit(Selection(ids=(thinned,)), assign={"excluded": True})
    batch = project.catalog.apply_edit(changes, reason="thinned", author="test")

    assert len(plan(project.catalog, settings=project.settings)) == 0  # nothing reruns or removes them
    drifts = verify(project.catalog, settings=project.settings)
    assert {d.subject for d in drifts} == {f"image:{thinned}"} and {d.problem for d in drifts} == {"excluded"}
    assert {d.step for d in drifts} >= {"apply-metadata", "publish"}
    assert all(Path(d.uri).exists() for d in drifts)  # left where they were
    assert verify(project.catalog, Selection(ids=(ids[0],)), project.settings) == []
    # Undone, the image is a subject again with the same outputs: nothing to list, nothing to run.
    project.catalog.undo(batch, author="test")
    assert verify(project.catalog, settings=project.settings) == []
    assert len(plan(project.catalog, settings=project.settings)) == 0


def test_outputs_of_removed_files_are_left_and_listed_by_verify(project: Project, executor):
    """A shot whose frames were all removed keeps its published panorama (as does a removed 360° image): verify
    had said nothing of it, while status counted it."""
    add_rig_shots(project.catalog, project.root, 2)
    panoramas = add_panoramas(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    assert verify(project.catalog, settings=project.settings) == []
    frames = [image for image in project.catalog.images(Selection(shots=("R001-000001",)))]
    removed_panorama = project.catalog.get(panoramas[0])
    project.catalog.mark_deleted([*(f.uri for f in frames), removed_panorama.uri], shot_tolerance_s=0.05)

    assert len(plan(project.catalog, settings=project.settings)) == 0  # nothing reruns or removes them
    drifts = verify(project.catalog, settings=project.settings)
    assert {d.subject for d in drifts} == {"shot:R001-000001", f"image:{panoramas[0]}"}
    assert {d.problem for d in drifts} == {"deleted"} and {d.step for d in drifts} >= {"stitch", "publish"}
    assert all(Path(d.uri).exists() for d in drifts)  # left where they were
    assert verify(project.catalog, Selection(shots=("R001-000000",)), project.settings) == []
    for drift in drifts:  # deleted, as the listing says: settled (they had been listed for ever)
        Path(drift.uri).unlink()
    assert verify(project.catalog, settings=project.settings) == []


def test_a_shot_left_partly_excluded_is_withdrawn_whole_and_listed_by_verify(project: Project, executor):
    """A frame away when its shot was thinned came back kept: the shot, 5 of its 6 frames excluded, was
    planned and its stitch failed on every run; now it is left out whole, its outputs listed as excluded."""
    add_rig_shots(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    shot = Selection(shots=("R001-000000",))
    away = next(image for image in project.catalog.images(shot) if image.camera_index == 5)
    project.catalog.mark_deleted([away.uri])
    changes = project.catalog.plan_edit(shot, assign={"excluded": True})
    project.catalog.apply_edit(changes, reason="thinned", author="test")
    back = record(Path(away.uri), Path(away.uri).read_bytes(), 0, camera_index=5, width=away.width)
    project.catalog.upsert_images([back])  # kept, as every image ingested is

    assert [i.excluded for i in project.catalog.images(shot)].count(False) == 1
    assert len(plan(project.catalog, settings=project.settings)) == 0
    drifts = verify(project.catalog, settings=project.settings)
    assert {d.subject for d in drifts} == {"shot:R001-000000"} and {d.problem for d in drifts} == {"excluded"}
