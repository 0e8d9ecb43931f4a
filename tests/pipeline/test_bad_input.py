"""Bad input fails the item with a clear reason and lets the others go on; bad config fails before running."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from tests.pipeline.captures import RIG, Project, add_panoramas, add_rig_shots, damaged, jpeg, record

from panopipe.catalog import Selection
from panopipe.catalog.schema import artifacts, jobs
from panopipe.cli import main
from panopipe.config import Settings
from panopipe.errors import ConfigError
from panopipe.pipeline import plan, run, status
from panopipe.pipeline.report import write_html_report


def rows(project: Project, table: sa.Table, **where: str) -> list[sa.Row]:
    with project.catalog.engine.connect() as conn:
        return conn.execute(sa.select(table).filter_by(**where)).all()


def test_shot_with_a_missing_frame_fails_and_the_others_go_on(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 3, skip_camera={1: 3})

    report = run(project.catalog, settings=project.settings, executor=executor)

    assert report.counts["stitch"] == {"succeeded": 2, "failed": 1}
    (failure,) = report.failures
    assert failure.subject == "shot:R001-000001"
    assert "missing the frame(s) of camera(s) [3]" in failure.error
    (job,) = rows(project, jobs, step="stitch", subject="shot:R001-000001")
    assert (job.status, job.attempts) == ("failed", 1) and job.finished_at is not None
    assert not rows(project, artifacts, subject="shot:R001-000001")
    assert report.counts["publish"] == {"succeeded": 2}
    assert status(project.catalog).failures[0].error == failure.error
    again = plan(project.catalog, settings=project.settings)
    assert [(i.step, i.reason.split(":")[0]) for i in again if i.step == "stitch"] == [
        ("stitch", "failed before")
    ]


def changed_since_ingest(path: Path) -> str:
    return f"input {path} changed since it was catalogued: run `panopipe ingest`"


def test_a_frame_changed_since_it_was_catalogued_fails_its_shot_and_the_others_go_on(
    project: Project, executor
):
    add_rig_shots(project.catalog, project.root, 3)
    changed = project.root / "R001" / "cam2" / "frame_000001.jpg"
    changed.write_bytes((project.root / "R001" / "cam2" / "frame_000002.jpg").read_bytes())  # `cp` over it

    report = run(project.catalog, settings=project.settings, steps=["stitch"], executor=executor)

    assert report.counts == {"stitch": {"succeeded": 2, "failed": 1}}
    assert [(f.subject, f.error) for f in report.failures] == [
        ("shot:R001-000001", changed_since_ingest(changed))
    ]
    assert not rows(project, artifacts, subject="shot:R001-000001")


def test_every_step_reading_a_catalogued_image_fails_when_it_changed(project: Project, executor):
    _, second = add_panoramas(project.catalog, project.root, 2)
    changed = project.root / "P001" / "pano_000001.jpg"
    changed.write_bytes((project.root / "P001" / "pano_000000.jpg").read_bytes())
    covered = project.with_steps(nadir={"enabled": True})  # without it, the others read the image's file

    for step, settings in [
        ("nadir", covered),
        ("apply-metadata", project.settings),
        ("derive", project.settings),
    ]:
        report = run(project.catalog, settings=settings, steps=[step], executor=executor)

        assert report.counts == {step: {"succeeded": 1, "failed": 1}}
        assert [(f.subject, f.error) for f in report.failures] == [
            (f"image:{second}", changed_since_ingest(changed))
        ]


def test_a_frame_whose_data_is_damaged_fails_its_shot_naming_it_and_the_others_go_on(
    project: Project, executor
):
    """Its header intact (ingest reads it), its entropy-coded data zeroed in part: libjpeg decodes garbage with
    a mere warning, which had been printed bare on stderr while the garbage was stitched and published."""
    add_rig_shots(project.catalog, project.root, 3)
    frame = project.root / "R001" / "cam2" / "frame_000001.jpg"
    broken = record(frame, damaged(frame.read_bytes()), 1, camera_index=2, width=RIG.cameras[2].width)
    project.catalog.upsert_images([broken])  # as ingest catalogues the file it reads

    report = run(project.catalog, settings=project.settings, executor=executor)

    assert report.counts["stitch"] == {"succeeded": 2, "failed": 1}
    (failure,) = report.failures
    assert failure.subject == "shot:R001-000001"
    assert failure.error.startswith(f"corrupt JPEG data in {frame}: ")
    assert status(project.catalog).failures[0].error == failure.error
    assert report.counts["publish"] == {"succeeded": 2}


def test_a_flat_photo_without_camera_index_says_why_it_is_not_stitched(project: Project):
    # what a folder of ordinary photos gives with the default [ingest] rules: shots of one frame, no camera
    data = jpeg(np.full((48, 64, 3), 128, np.uint8))
    project.catalog.upsert_images([record(project.root / "R009" / "IMG_0001.jpg", data, 1, reel="R009")])
    project.catalog.assign_shots(["R009"], 0.05)

    (item,) = plan(project.catalog, settings=project.settings, steps=["stitch"])

    assert item.problem == (
        "shot R009-000001: some frames have no camera index (the `camera` group of [ingest] path_pattern); "
        "a 360° image needs its GPano ProjectionType, a flat photo alone is not stitched"
    )


def test_frames_that_do_not_overlap_fail_the_opencv_stitch(project: Project, executor):
    rng = np.random.default_rng(7)
    project.catalog.upsert_images(
        record(
            project.root / "R009" / f"cam{i}" / "frame_000001.jpg",
            jpeg(rng.integers(0, 255, (120, 160, 3), "uint8")),
            1,
            reel="R009",
            camera_index=i,
        )
        for i in range(3)
    )
    project.catalog.assign_shots(["R009"], 0.05)
    add_panoramas(project.catalog, project.root, 1)
    settings = project.with_steps(stitch={"stitcher": "opencv"})

    report = run(project.catalog, settings=settings, executor=executor)

    (failure,) = report.failures
    assert failure.subject == "shot:R009-000001" and "not enough overlapping features" in failure.error
    assert report.counts["publish"] == {"succeeded": 1}  # the 360° image went on


def external(project: Project, command: str, timeout_s: float = 30) -> Settings:
    return project.with_steps(
        stitch={"stitcher": "external", "params": {"command": command, "timeout_s": timeout_s}}
    )


def test_external_command_that_exits_non_zero_keeps_its_log(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 1)
    script = "import sys; print('stitching', len(sys.argv) - 1, 'frames'); sys.exit(3)"
    settings = external(project, f'{sys.executable} -c "{script}" {{inputs}}')

    report = run(project.catalog, settings=settings, steps=["stitch"], executor=executor)

    assert len(report.failures) == 1
    (job,) = rows(project, jobs, step="stitch")
    assert job.status == "failed" and "3" in job.error
    assert "stitching 6 frames" in job.log


def test_external_command_failing_for_one_reason_is_one_group_of_failures(
    project: Project, executor, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    """The tool's output in the reason named each job's work directory: 3 shots failing for one reason were 3
    groups, 3 rows alike in `status` and the report, their outputs printed apart below the table. The work
    directory, removed with the job, is written {workdir}; each job's log keeps the output as printed."""
    add_rig_shots(project.catalog, project.root, 3)
    script = "import sys; print('cannot open project for', sys.argv[1]); sys.exit(3)"
    settings = external(project, f'{sys.executable} -c "{script}" {{inputs}}')

    run(project.catalog, settings=settings, steps=["stitch"], executor=executor)

    current = status(project.catalog)
    reason = f"external stitcher: {Path(sys.executable).name} exited with code 3:"
    (group,) = current.failure_groups
    assert (group.count, group.message) == (3, f"{reason}\ncannot open project for {{workdir}}/frame_00.jpg")
    printed = [
        re.findall(r"cannot open project for (.+)/frame_00.jpg", f.log or "") for f in current.failures
    ]
    assert len({workdir for (workdir,) in printed}) == 3 and "{workdir}" not in str(printed)
    page = write_html_report(project.catalog, tmp_path / "report.html").read_text()
    assert page.count("<td>stitch</td><td>failed</td><td>3</td>") == 1
    assert main(["status", "--catalog", project.catalog.url]) == 0
    out = capsys.readouterr().out
    assert out.endswith(
        "\nstitch failed (shot:R001-000000, shot:R001-000001, shot:R001-000002):\n"
        "cannot open project for {workdir}/frame_00.jpg\n"
    ), out
    assert out.count(reason) == 1  # its row's, which the tool's output follows under the row's words


def test_external_command_that_hangs_is_killed_at_the_timeout(project: Project, executor):
    add_rig_shots(project.catalog, project.root, 1)
    settings = external(
        project, f"{sys.executable} -c \"import time; print('working', flush=True); time.sleep(60)\"", 1
    )

    report = run(project.catalog, settings=settings, steps=["stitch"], executor=executor)

    (failure,) = report.failures
    assert "timed out after 1 s" in failure.error
    (job,) = rows(project, jobs, step="stitch")
    assert "working" in job.log and job.finished_at - job.started_at < timedelta(seconds=20)


def test_output_that_cannot_be_written_records_the_error_and_no_artifact(project: Project, executor):
    add_panoramas(project.catalog, project.root, 2)
    blocker = project.out.parent / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    settings = project.with_steps(pipeline={"output": str(blocker), "backoff_s": 0.01})

    report = run(project.catalog, settings=settings, steps=["apply-metadata"], executor=executor)

    assert report.counts == {"apply-metadata": {"failed": 2}}
    assert all("cannot write" in f.error for f in report.failures)
    assert not rows(project, artifacts)
    assert {j.status for j in rows(project, jobs)} == {"failed"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"template": "../{reel}/{frame:06d}.jpg"}, "outside the publish root"),
        ({"template": "/etc/{reel}/{frame:06d}.jpg"}, "outside the publish root"),
        ({"template": "{project}/{nope}.jpg"}, "names 'nope', which no subject has; fields: project, reel"),
        ({"template": "{shot"}, r"invalid template '\{shot': expected '\}' before end of string"),
        ({"template": "{reel}/{frame:s}.jpg"}, "Unknown format code 's' for object of type 'int'"),
        (
            {"template": "{project}/{frame:06d}"},
            r"names files without the .jpg extension \(e.g. 'demo/000042'\)",
        ),
        ({"layout": "nearby"}, r"layout must be 'apart' or 'beside', got 'nearby'"),
    ],
)
def test_publish_template_is_refused_before_anything_runs(
    project: Project, executor, table: dict[str, object], message: str
):
    add_panoramas(project.catalog, project.root, 2)
    settings = project.with_steps(publish=table)

    with pytest.raises(ConfigError, match=message):
        plan(project.catalog, settings=settings)
    with pytest.raises(ConfigError, match=message):
        run(project.catalog, settings=settings, executor=executor)

    assert not rows(project, jobs) and not project.out.exists()


def test_subjects_a_template_names_alike_fail_and_the_rest_runs(project: Project, executor):
    add_panoramas(project.catalog, project.root, 3)
    add_rig_shots(project.catalog, project.root, 1)
    # the three panoramas of reel P001 get one name; the rig shot of reel R001 its own
    settings = project.with_steps(publish={"template": "{project}/{reel}.jpg"})

    report = run(project.catalog, settings=settings, executor=executor)

    assert report.counts["publish"] == {"failed": 3, "succeeded": 1}
    assert report.counts["derive"] == {"succeeded": 4}  # every other job ran
    assert {f.step for f in report.failures} == {"publish"} and len(report.failures) == 3
    assert all(
        "the same name" in f.error and f.error.endswith("(e.g. {shot} or {id})") for f in report.failures
    )
    assert sorted(p.name for p in project.out.glob("publish/demo/*.jpg")) == ["R001.jpg"]
    # recorded as failed jobs, which status and the exports show (they were told only in the run's output)
    now = status(project.catalog, settings)
    assert now.jobs["publish"] == {"failed": 3, "succeeded": 1}
    assert sorted((f.step, f.subject, f.error) for f in now.failures) == sorted(
        (f.step, f.subject, f.error) for f in report.failures
    )


def test_a_failed_stitch_holds_back_the_steps_after_it_in_that_run(project: Project, executor):
    """A shot that lost a frame fails its stitch; its apply-metadata, derive and publish would read the
    panorama stitched before, with the frame, and republish it: they wait for a stitch that succeeds."""
    add_rig_shots(project.catalog, project.root, 2)
    run(project.catalog, settings=project.settings, executor=executor)
    published = {p: p.read_bytes() for p in project.out.glob("publish/**/*.jpg")}
    frame = next(
        i.uri for i in project.catalog.images(Selection(shots=("R001-000000",))) if i.camera_index == 2
    )
    project.catalog.mark_deleted([frame])

    report = run(project.catalog, settings=project.settings, executor=executor)

    assert report.counts == {"stitch": {"failed": 1}}
    assert {p: p.read_bytes() for p in project.out.glob("publish/**/*.jpg")} == published
    later = {item.step for item in plan(project.catalog, settings=project.settings)}
    assert later == {"stitch", "apply-metadata", "derive", "publish"}  # still to do, once it stitches


def test_a_subject_whose_name_an_earlier_output_has_fails_and_the_rest_runs(project: Project, executor):
    add_panoramas(project.catalog, project.root, 1)
    settings = project.with_steps(publish={"template": "{project}/latest.jpg"})
    run(project.catalog, settings=settings, executor=executor)
    latest = (project.out / "publish/demo/latest.jpg").read_bytes()
    add_panoramas(project.catalog, project.root / "more", 1)  # another subject, same name

    report = run(project.catalog, settings=settings, executor=executor)

    assert report.counts == {
        "apply-metadata": {"succeeded": 1},
        "derive": {"succeeded": 1},
        "publish": {"failed": 1},
    }
    assert "the same name" in report.failures[0].error
    assert (project.out / "publish/demo/latest.jpg").read_bytes() == latest  # the first one's, untouched


def test_invalid_configuration_is_refused(project: Project):
    with pytest.raises(ConfigError, match="unknown stitcher"):
        plan(project.catalog, settings=project.with_steps(stitch={"stitcher": "magic"}))
    with pytest.raises(
        ConfigError, match=r"unknown key in \[steps.derive\]: 'thumb'; did you mean 'thumbnail'"
    ):
        plan(project.catalog, settings=project.with_steps(derive={"thumb": 5}))
    with pytest.raises(ConfigError, match="unknown step"):
        plan(project.catalog, steps=["stich"], settings=project.settings)
    with pytest.raises(ConfigError, match="rig profile"):
        plan(project.catalog, settings=project.with_steps(stitch={"rig": {"name": "x"}}))
    with pytest.raises(ConfigError, match=r"invalid description template '\{project\} \{nope\}': 'nope'"):
        plan(project.catalog, settings=project.with_steps(apply_metadata={"description": "{project} {nope}"}))
    for output in (5, ""):  # not a folder named "5", nor the default in disguise
        with pytest.raises(ConfigError, match=r"\[steps.pipeline\]: output must be a folder or an s3://"):
            plan(project.catalog, settings=project.with_steps(pipeline={"output": output}))
    assert RIG.cameras  # the default settings remain valid
    assert len(plan(project.catalog, settings=project.settings)) == 0


def test_a_subject_not_located_on_a_route_fails_its_publish_with_how_to_locate_it(project: Project, executor):
    add_panoramas(project.catalog, project.root, 2)
    settings = project.with_steps(publish={"template": "{route}/{route}_mp{mp:08.3f}.jpg"})

    report = run(project.catalog, settings=settings, executor=executor)

    assert report.counts["publish"] == {"failed": 2} and report.counts["derive"] == {"succeeded": 2}
    assert {f.error.partition(": ")[2] for f in report.failures} == {
        "template '{route}/{route}_mp{mp:08.3f}.jpg' cannot name "
        + f.subject
        + ": it has no mp, route (`panopipe route locate` places it on a route)"
        for f in report.failures
    }
