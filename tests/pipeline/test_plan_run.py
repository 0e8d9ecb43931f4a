"""plan and run end to end on real JPEGs, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from tests.pipeline.captures import RIG, Project, add_panoramas, add_rig_shots, jpeg

from panopipe.catalog import CAPTURE_FIELDS, ImageRecord, Selection
from panopipe.catalog.schema import artifacts
from panopipe.catalog.subjects import FEW_IDS, selected_subjects
from panopipe.catalog.types import new_id
from panopipe.executors import InlineExecutor
from panopipe.pipeline import load_pipeline, plan, run, status, verify
from panopipe.pipeline.estimate import estimate
from panopipe.pipeline.store import candidates, record_submitted
from panopipe.steps.base import JobSpec
from panopipe.storage import resolve_uri

STEPS = ("stitch", "apply-metadata", "derive", "publish")


def items(result, step: str) -> dict[str, str]:
    return {item.subject: item.reason for item in result if item.step == step}


def test_run_makes_every_output_and_leaves_nothing_to_plan(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 2)
    add_panoramas(project.catalog, project.root, 2)
    first = plan(project.catalog, settings=project.settings)
    assert first.counts() == {"stitch": 2, "apply-metadata": 4, "derive": 4, "publish": 4}
    assert set(items(first, "apply-metadata").values()) == {"new input", "after stitch"}

    report = run(project.catalog, settings=project.settings, executor=executor)

    assert report.ok, report.failures
    assert report.counts == {step: {"succeeded": 2 if step == "stitch" else 4} for step in STEPS}
    assert len(plan(project.catalog, settings=project.settings)) == 0
    with project.catalog.engine.connect() as conn:
        rows = conn.execute(sa.select(artifacts)).all()
    assert len(rows) == 2 + 4 + 8 + 12  # derive makes a thumbnail and a preview, publish publishes all three
    for row in rows:
        storage, key = resolve_uri(row.output_uri)
        assert hashlib.sha256(storage.get(key)).hexdigest() == row.output_hash
    published = sorted(
        p.relative_to(project.out / "publish").as_posix() for p in project.out.rglob("publish/**/*.jpg")
    )
    assert published == [  # thumbnails and previews apart, so that a reel folder holds its panoramas alone
        f"{tree}demo/{reel}/demo_{reel}_{frame:06d}.jpg"
        for tree in ("", "previews/", "thumbnails/")
        for reel in ("P001", "R001")
        for frame in (0, 1)
    ]
    assert run(project.catalog, settings=project.settings, executor=executor).counts == {}


def test_gps_edit_makes_apply_metadata_and_derive_stale_for_those_images_only(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 2)
    ids = add_panoramas(project.catalog, project.root, 5)
    run(project.catalog, settings=project.settings, executor=executor)
    edited = ids[:3]
    changes = project.catalog.plan_edit(Selection(ids=tuple(edited)), assign={"lat": 47.5, "lon": 9.25})
    project.catalog.apply_edit(changes, reason="GPS fix", author="test")

    after = plan(project.catalog, settings=project.settings)

    expected = {f"image:{i}" for i in edited}
    assert items(after, "apply-metadata") == dict.fromkeys(expected, "metadata edited")
    assert items(after, "derive") == dict.fromkeys(expected, "metadata edited")  # its images carry GPS
    assert items(after, "stitch") == {}
    # publish copies apply-metadata's output, so it follows in the same run (not stale by itself)
    assert items(after, "publish") == dict.fromkeys(expected, "after apply-metadata")
    report = run(project.catalog, settings=project.settings, executor=executor)
    assert report.counts == {step: {"succeeded": 3} for step in ("apply-metadata", "derive", "publish")}
    assert len(plan(project.catalog, settings=project.settings)) == 0


def test_an_edit_made_while_a_run_works_leaves_the_jobs_it_missed_stale(project: Project):
    """Jobs planned before an edit carry the old values though they end after it: their outputs are stale
    (before, an artifact counted every change before it was recorded as in it, and verify found drift)."""
    ids = add_panoramas(project.catalog, project.root, 8)
    edited: list[str] = []

    def edit_once(step: str, done: int, total: int) -> None:
        if not edited and done < total:  # the jobs not ended yet were planned with the old altitude
            changes = project.catalog.plan_edit(Selection(ids=tuple(ids)), assign={"alt": 456.0})
            edited.append(project.catalog.apply_edit(changes, reason="RTK", author="test"))

    steps = ["apply-metadata"]
    report = run(project.catalog, settings=project.settings, steps=steps, workers=1, progress=edit_once)

    assert report.counts == {"apply-metadata": {"succeeded": 8}} and edited
    after = plan(project.catalog, steps=steps, settings=project.settings)
    assert items(after, "apply-metadata") == {f"image:{i}": "metadata edited" for i in ids}
    run(project.catalog, settings=project.settings, steps=steps, executor=InlineExecutor())
    assert verify(project.catalog, settings=project.settings) == []


def test_editing_one_frame_makes_its_shot_stale(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    frame = next(project.catalog.images(Selection(shots=("R001-000001",))))
    project.catalog.apply_edit(
        project.catalog.plan_edit(Selection(ids=(frame.id,)), assign={"alt": 600.0}), reason="alt", author="t"
    )
    assert items(plan(project.catalog, settings=project.settings), "apply-metadata") == {
        "shot:R001-000001": "metadata edited"
    }


def test_correcting_the_rig_profile_restitches_the_shots(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 2)
    add_panoramas(project.catalog, project.root, 1)
    run(project.catalog, settings=project.settings, executor=executor)
    corrected = project.with_steps(
        stitch={**project.settings.steps["stitch"], "rig": RIG.replace_camera(0, yaw_deg=1.5).to_dict()}
    )

    after = plan(project.catalog, settings=corrected)

    assert items(after, "stitch") == dict.fromkeys(
        ("shot:R001-000000", "shot:R001-000001"), "parameters changed"
    )
    assert set(items(after, "derive")) == {"shot:R001-000000", "shot:R001-000001"}
    run(project.catalog, settings=corrected, executor=executor)
    assert len(plan(project.catalog, settings=corrected)) == 0


def test_changed_parameters_changed_input_and_force(project: Project, executor):
    add_panoramas(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    bigger = project.with_steps(derive={"thumbnail": 96, "preview": 0})
    assert items(plan(project.catalog, settings=bigger), "derive") == dict.fromkeys(
        (f"image:{i.id}" for i in project.catalog.images()), "parameters changed"
    )

    image = next(project.catalog.images())
    data = jpeg(np.zeros((128, 256, 3), "uint8"))
    Path(image.uri).write_bytes(data)
    fields = {name: getattr(image, name) for name in CAPTURE_FIELDS}
    rewritten = ImageRecord(
        uri=image.uri, size=len(data), content_hash=hashlib.sha256(data).hexdigest(), **fields
    )
    project.catalog.upsert_images([rewritten])
    changed = plan(project.catalog, settings=project.settings)
    assert items(changed, "derive") == {f"image:{image.id}": "input changed"}

    forced = plan(project.catalog, steps=["derive"], settings=project.settings, force=True)
    assert set(items(forced, "derive").values()) == {"forced"} and len(forced) == 2


def test_a_changed_frame_is_input_changed_for_stitch_though_an_edit_it_does_not_read_came_after(
    project: Project, executor
):
    add_rig_shots(project.catalog, project.root, 1)
    run(project.catalog, settings=project.settings, executor=executor)
    changes = project.catalog.plan_edit(Selection(), assign={"alt": 519.4})  # stitch does not read alt
    project.catalog.apply_edit(changes, reason="RTK", author="test")
    run(project.catalog, settings=project.settings, executor=executor)

    frame = next(image for image in project.catalog.images() if image.camera_index == 2)
    data = jpeg(np.full((RIG.cameras[2].height, RIG.cameras[2].width, 3), 90, "uint8"))
    Path(frame.uri).write_bytes(data)  # the frame re-exported from the camera, say
    fields = {name: getattr(frame, name) for name in CAPTURE_FIELDS}
    project.catalog.upsert_images(
        [ImageRecord(uri=frame.uri, size=len(data), content_hash=hashlib.sha256(data).hexdigest(), **fields)]
    )

    assert items(plan(project.catalog, settings=project.settings), "stitch") == {
        "shot:R001-000000": "input changed"
    }


def test_a_derive_change_republishes_the_derived_copies(project: Project, executor):
    add_panoramas(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    smaller = project.with_steps(derive={"thumbnail": 64})
    subjects = {f"image:{i.id}" for i in project.catalog.images()}
    planned = plan(project.catalog, settings=smaller)
    assert items(planned, "publish") == dict.fromkeys(subjects, "parameters changed")

    report = run(project.catalog, settings=smaller, executor=executor)
    assert report.counts == {"derive": {"succeeded": 2}, "publish": {"succeeded": 2}}
    published = sorted(project.out.glob("publish/thumbnails/**/*.jpg"))
    assert len(published) == 2
    for path in published:
        with Image.open(path) as thumbnail:
            assert max(thumbnail.size) == 64
    assert len(plan(project.catalog, settings=smaller)) == 0


def test_a_derive_that_failed_is_published_once_it_succeeds(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    # One shot's panorama goes missing, so its derive fails: its publish waits for a derive that succeeds
    # (it would publish what derive made before).
    (stitched,) = project.out.glob("stitch/shot/R001-000001/*.jpg")
    saved = stitched.read_bytes()
    stitched.unlink()
    smaller = project.with_steps(derive={"thumbnail": 48, "preview": 96})
    failed = run(project.catalog, settings=smaller, executor=executor)
    assert failed.counts["derive"] == {"succeeded": 1, "failed": 1}
    assert failed.counts["publish"] == {"succeeded": 1}

    stitched.write_bytes(saved)
    after = plan(project.catalog, settings=smaller)
    assert items(after, "derive") == {"shot:R001-000001": "parameters changed"}  # and failed before
    assert items(after, "publish") == {"shot:R001-000001": "parameters changed"}
    report = run(project.catalog, settings=smaller, executor=executor)

    assert report.counts == {"derive": {"succeeded": 1}, "publish": {"succeeded": 1}}
    for name, size in (("thumbnail", 48), ("preview", 96)):
        for shot in ("R001-000000", "R001-000001"):
            (derived,) = project.out.glob(f"derive/shot/{shot}/{name}-*.jpg")
            (published,) = project.out.glob(f"publish/{name}s/demo/R001/demo_R001_{shot[-6:]}.jpg")
            assert published.read_bytes() == derived.read_bytes(), (name, shot)
            with Image.open(published) as image:
                assert max(image.size) == size
    assert len(plan(project.catalog, settings=smaller)) == 0


def test_with_derive_turned_off_publish_publishes_the_image_alone(project: Project, executor):
    """Thumbnails and previews derive made before would carry the old metadata, and nothing remakes them:
    publish republished them, and verify called them outdated "which run rewrites" forever."""
    ids = add_panoramas(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    assert len(list(project.out.glob("publish/thumbnails/**/*.jpg"))) == 2
    off = project.with_steps(derive={"enabled": False})
    changes = project.catalog.plan_edit(Selection(ids=tuple(ids)), assign={"alt": 600.0})
    project.catalog.apply_edit(changes, reason="RTK", author="test")

    report = run(project.catalog, settings=off, executor=executor)

    assert report.counts == {"apply-metadata": {"succeeded": 2}, "publish": {"succeeded": 2}}
    published = sorted(p.relative_to(project.out).as_posix() for p in project.out.glob("publish/**/*.jpg"))
    assert published == ["publish/demo/P001/demo_P001_000000.jpg", "publish/demo/P001/demo_P001_000001.jpg"]
    assert verify(project.catalog, settings=off) == [] and len(plan(project.catalog, settings=off)) == 0


def test_a_frame_that_leaves_its_shot_makes_the_shot_stale(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 3)
    run(project.catalog, settings=project.settings, executor=executor)

    def frame(shot: str, camera: int) -> str:
        images = project.catalog.images(Selection(shots=(shot,)))
        return next(image.id for image in images if image.camera_index == camera)

    def stitched() -> dict[str, str | None]:
        found = plan(project.catalog, steps=["stitch"], settings=project.settings)
        return {item.subject: item.problem for item in found}

    def edit(image_id: str, **assign: object) -> str:
        changes = project.catalog.plan_edit(Selection(ids=(image_id,)), assign=assign)
        return project.catalog.apply_edit(changes, reason="test", author="test")

    # moved to another shot: both the shot it left and the one it joined
    edit(frame("R001-000001", 4), shot="R001-000002")
    assert set(stitched()) == {"shot:R001-000001", "shot:R001-000002"}


def test_a_full_run_removes_the_outputs_of_shots_no_image_belongs_to_any_more(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    made = {
        path for path in project.out.rglob("*.jpg") if "R001-000000" in str(path) or "000000" in path.name
    }
    assert made and all(path.is_file() for path in made)
    # the shot's frames form another shot now (its reel's folder renamed and ingested again does this)
    frames = Selection(shots=("R001-000000",))
    changes = project.catalog.plan_edit(frames, assign={"reel": "R009", "shot": "R009-000000"})
    project.catalog.apply_edit(changes, reason="renamed", author="test")

    partial = run(project.catalog, Selection(reels=("R009",)), settings=project.settings, executor=executor)
    assert partial.removed == 0  # a selection's run leaves what it did not select
    report = run(project.catalog, settings=project.settings, executor=executor)

    # stitch, apply-metadata and derive's intermediates, and the published image, thumbnail and preview
    assert report.removed == 7 and not any(path.exists() for path in made)
    published = sorted(
        p.relative_to(project.out).as_posix() for p in project.out.glob("publish/demo/*/*.jpg")
    )
    assert published == ["publish/demo/R001/demo_R001_000001.jpg", "publish/demo/R009/demo_R009_000000.jpg"]
    assert verify(project.catalog, settings=project.settings) == []
    assert run(project.catalog, settings=project.settings, executor=executor).removed == 0


def test_a_full_run_drops_the_queued_jobs_of_shots_no_image_belongs_to_any_more(project: Project, executor):
    """An upload regroups shots as its frames arrive: the stitch the event path queued for a shot that is gone
    since (R001-000000.2 here) was never submitted, and status counted it queued for ever."""
    add_rig_shots(project.catalog, project.root, 1)
    stitch = load_pipeline(project.catalog, project.settings, ["stitch"]).steps[0]
    gone = JobSpec(new_id(), "stitch", "shot:R001-000000.2", "f" * 64, {})
    live = JobSpec(new_id(), "stitch", "shot:R001-000000", "e" * 64, {})
    record_submitted(project.catalog, stitch, [gone, live], ["new input"] * 2, "batch")
    assert status(project.catalog).jobs == {"stitch": {"queued": 2}}

    run(project.catalog, settings=project.settings, executor=executor)

    assert status(project.catalog).jobs["stitch"] == {"succeeded": 1}


def test_selection_limits_the_plan(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 2)
    add_panoramas(project.catalog, project.root, 2)
    only = plan(project.catalog, Selection(reels=("P001",)), settings=project.settings)
    assert {item.subject.split(":")[0] for item in only} == {"image"}
    run(project.catalog, Selection(reels=("P001",)), settings=project.settings, executor=executor)
    rest = plan(project.catalog, settings=project.settings)
    assert {item.subject for item in rest} == {"shot:R001-000000", "shot:R001-000001"}


@pytest.mark.parametrize("regrouped", [False, True], ids=["ingest", "event"])
def test_deleting_a_frame_makes_its_shot_stale(project: Project, executor, regrouped: bool):
    """A removal event regroups the frames left in the reel: the frame gone lost its shot, and the shot was
    found up to date, its panorama (made with that frame) published as it was."""
    add_rig_shots(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    frame = next(project.catalog.images(Selection(shots=("R001-000001",))))
    project.catalog.mark_deleted([frame.uri], shot_tolerance_s=0.05 if regrouped else None)

    after = plan(project.catalog, settings=project.settings)

    assert items(after, "stitch") == {"shot:R001-000001": "input changed"}
    (failure,) = run(project.catalog, settings=project.settings, executor=executor).failures
    assert "missing the frame(s) of camera(s)" in failure.error


def test_a_candidate_found_up_to_date_is_recorded_so_by_a_run_never_by_a_plan(project: Project, executor):
    """A run records the candidates it finds up to date (``artifacts.checked_at``), so that the next plans need
    not fingerprint them again; `plan` and `run --estimate` only look: they had written it, which made an
    interrupted `db migrate` of the catalog impossible to resume."""
    add_rig_shots(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    steps = load_pipeline(project.catalog, project.settings).steps
    changes = project.catalog.plan_edit(Selection(shots=("R001-000001",)), assign={"lat": 47.0})
    project.catalog.apply_edit(changes, reason="GPS", author="t")

    def found() -> dict[str, set[str]]:
        with project.catalog.engine.begin() as conn, selected_subjects(conn, Selection()) as selected:
            return {
                step: set(kinds.get("shot", ())) for step, kinds in candidates(conn, steps, selected).items()
            }

    def recorded() -> list[sa.Row]:
        with project.catalog.engine.connect() as conn:
            return conn.execute(sa.select(artifacts).order_by(artifacts.c.id)).all()

    touched = {"R001-000001"}
    every = {"stitch": touched, "apply-metadata": touched, "derive": touched, "publish": touched}
    before = recorded()
    assert found() == every
    assert items(plan(project.catalog, settings=project.settings), "stitch") == {}
    assert estimate(project.catalog, settings=project.settings).jobs == 3
    assert recorded() == before and found() == every
    # A run of stitch alone has no stitch job to run, and records its candidate found up to date.
    assert run(project.catalog, steps=["stitch"], settings=project.settings, executor=executor).counts == {}
    assert found() == {**every, "stitch": set()}
    run(project.catalog, settings=project.settings, executor=executor)
    assert found() == {"stitch": set(), "apply-metadata": set(), "derive": set(), "publish": set()}


def test_a_few_ids_plan_what_a_long_selection_of_the_same_images_plans(project: Project, executor):
    # Up to FEW_IDS ids select subjects through subqueries (shared ones, the ids a parameter, for ids alone);
    # padded with unknown ids past that, the same images go through temporary tables: all must plan the same,
    # whatever made the subjects due.
    add_rig_shots(project.catalog, project.root, 3, skip_camera={2: 0})  # shot 2 fails to stitch
    panoramas = add_panoramas(project.catalog, project.root, 3)
    chosen = [*panoramas[:2]]

    def plans_agree(*reasons: str) -> None:
        frames = [i.id for i in project.catalog.images(Selection(reels=("R001",)))]
        few = Selection(ids=(*frames[::4], *chosen))
        padded = Selection(ids=(*few.ids, *(str(uuid.uuid4()) for _ in range(FEW_IDS))))
        filtered = Selection(ids=few.ids, reels=("R001", "P001"))  # not ids only: subqueries of its own
        small, narrowed, full = (
            plan(project.catalog, s, settings=project.settings) for s in (few, filtered, padded)
        )
        assert small.items == narrowed.items == full.items
        assert {item.reason.partition(":")[0] for item in small} >= set(reasons)

    plans_agree("new input")
    run(project.catalog, settings=project.settings, executor=executor)
    plans_agree("failed before")
    gps = project.catalog.plan_edit(Selection(ids=(panoramas[0],)), assign={"lat": 47.5})
    project.catalog.apply_edit(gps, reason="GPS fix", author="test")
    add_rig_shots(project.catalog, project.root, 4, skip_camera={2: 0})
    gone = next(project.catalog.images(Selection(shots=("R001-000001",))))
    project.catalog.mark_deleted([gone.uri])
    chosen.append(gone.id)
    plans_agree("metadata edited", "input changed", "new input", "failed before")
