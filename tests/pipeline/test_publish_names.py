"""Published names that move: frames renumbered (a name one image leaves, another takes, in one run), names
swapped, and the collisions publish still refuses: two subjects that would end with one name."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tests.pipeline.captures import Project, add_panoramas

from panopipe.catalog import Selection
from panopipe.executors import InlineExecutor, LocalExecutor
from panopipe.pipeline import plan, run, verify
from panopipe.pipeline.remote import discard_superseded

TREES = ("", "previews/", "thumbnails/")
TEMPLATE = "{project}/{reel}/{project}_{reel}_{frame:06d}.jpg"


def same_name(one: str, other: str, path: Path) -> str:
    """Why publish refuses images ``one`` and ``other`` (ids) the name at ``path``."""
    first, second = sorted((f"image:{one}", f"image:{other}"))
    return (
        f"[steps.publish]: template {TEMPLATE!r} gives {first} and {second} the same name {path}; add a field "
        "that tells them apart (e.g. {shot} or {id})"
    )


def renumbered(project: Project, executor: LocalExecutor, count: int, *frames: tuple[int, int]) -> list[str]:
    """The ids of ``count`` panoramas (frames 0 on) published, then renumbered one edit after the other: the
    n-th image to frame f for each ``(n, f)`` of ``frames``."""
    ids = add_panoramas(project.catalog, project.root, count)
    run(project.catalog, settings=project.settings, executor=executor)
    for n, frame in frames:
        changes = project.catalog.plan_edit(Selection(ids=(ids[n],)), assign={"frame": frame})
        project.catalog.apply_edit(changes, reason="renumber", author="test")
    return ids


def published(project: Project) -> dict[str, bytes]:
    """Each published file's content, by its path under the publish root."""
    root = project.out / "publish"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def made(project: Project, image_id: str) -> dict[str, bytes]:
    """What apply-metadata and derive made of ``image_id``, by the tree it is published in."""
    sources = {"": "apply-metadata/image/{}/image-*.jpg", "previews/": "derive/image/{}/preview-*.jpg"}
    sources["thumbnails/"] = "derive/image/{}/thumbnail-*.jpg"
    return {
        tree: next(project.out.glob(pattern.format(image_id))).read_bytes()
        for tree, pattern in sources.items()
    }


def expected(project: Project, frames: dict[str, int]) -> dict[str, bytes]:
    return {
        f"{tree}demo/P001/demo_P001_{frame:06d}.jpg": made(project, image_id)[tree]
        for image_id, frame in frames.items()
        for tree in TREES
    }


def test_frames_renumbered_one_after_the_other_are_published_under_their_new_names(
    project: Project, executor
):
    """A reel shifted by one: each image's new name was another's, which leaves it in the same run. Publish
    refused them all, on every run, as names the template gives two images."""
    ids = renumbered(project, executor, 3, (2, 3), (1, 2), (0, 1))

    assert not [i.problem for i in plan(project.catalog, settings=project.settings) if i.problem]
    report = run(project.catalog, settings=project.settings, executor=executor)

    assert report.ok, report.failures
    assert published(project) == expected(project, {image_id: n + 1 for n, image_id in enumerate(ids)})
    assert verify(project.catalog, settings=project.settings) == []
    assert len(plan(project.catalog, settings=project.settings)) == 0


@pytest.mark.parametrize("pool", [False, True], ids=["inline", "local"])
def test_two_frames_swapped_swap_their_published_names(project: Project, executor: LocalExecutor, pool: bool):
    """Each job writes the name the other leaves. The name a job supersedes is the other's new one: it is
    deleted only once both jobs are recorded, and only if nothing records it (inline, the first recorded
    deleted what the second had just written)."""
    ids = renumbered(project, executor, 2, (0, 1), (1, 0))

    report = run(project.catalog, settings=project.settings, executor=executor if pool else InlineExecutor())

    assert report.ok, report.failures
    assert report.counts["publish"] == {"succeeded": 2}
    assert published(project) == expected(project, {ids[0]: 1, ids[1]: 0})
    assert verify(project.catalog, settings=project.settings) == []
    assert len(plan(project.catalog, settings=project.settings)) == 0


def test_a_name_an_image_keeps_is_refused_to_another_and_plan_says_so(project: Project, executor):
    """Image 2 renumbered 0, the name image 0 keeps: refused. Image 1 renumbered 2, the name image 2 would
    leave but keeps, its publish refused: refused too. Nothing published changes, and plan tells it all."""
    ids = renumbered(project, executor, 3, (2, 0), (1, 2))
    before = published(project)  # as the edits left it: they publish nothing
    names = project.out / "publish/demo/P001"
    first = same_name(ids[0], ids[2], names / "demo_P001_000000.jpg")
    second = (
        same_name(ids[1], ids[2], names / "demo_P001_000002.jpg")
        + f"; image:{ids[2]} keeps it, being refused too"
    )

    problems = {(i.step, i.subject): i.problem for i in plan(project.catalog, settings=project.settings)}
    report = run(project.catalog, settings=project.settings, executor=executor)

    assert {key: why for key, why in problems.items() if why} == {
        ("publish", f"image:{ids[2]}"): first,
        ("publish", f"image:{ids[1]}"): second,
    }
    assert report.counts["publish"] == {"failed": 2}
    assert sorted((f.subject, f.error) for f in report.failures) == sorted(
        [(f"image:{ids[2]}", first), (f"image:{ids[1]}", second)]
    )
    assert published(project) == before


def test_a_superseded_name_is_deleted_only_while_it_holds_what_was_recorded(project: Project, tmp_path: Path):
    """What a job on AWS Batch may leave for a refresh to find: the name another job superseded, written
    since by a job not recorded yet (still running) that takes it over."""
    add_panoramas(project.catalog, project.root, 1)
    run(project.catalog, settings=project.settings, executor=InlineExecutor())
    (recorded,) = (project.out / "publish/demo/P001").glob("*.jpg")
    left, taken = tmp_path / "left.jpg", tmp_path / "taken.jpg"
    left.write_bytes(b"left")
    taken.write_bytes(b"taken over")

    def sha256(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    discard_superseded(
        project.catalog,
        {
            str(left): sha256(b"left"),  # as recorded: deleted
            str(taken): sha256(b"what was recorded"),  # another's now: kept
            str(recorded): sha256(b"any"),  # an artifact records it: kept
            str(tmp_path / "gone.jpg"): sha256(b"gone"),
        },
    )

    assert not left.exists() and taken.read_bytes() == b"taken over" and recorded.exists()


def test_a_name_left_by_an_image_whose_run_failed_before_publish_is_not_taken(project: Project, executor):
    """Image 1 renumbered 2 and image 0 renumbered 1, but image 1's file changed since it was catalogued: its
    apply-metadata fails, so it keeps its name, and image 0 may not take it (it wrote over what image 1 had
    published). Once the file is back, both move."""
    ids = renumbered(project, executor, 2, (1, 2), (0, 1))
    before = published(project)
    source = project.root / "P001/pano_000001.jpg"
    data = source.read_bytes()
    source.write_bytes(data + b"changed")

    report = run(project.catalog, settings=project.settings, executor=executor)

    assert report.counts["apply-metadata"] == {"succeeded": 1, "failed": 1}
    assert report.counts["publish"] == {"failed": 1}
    assert [f.subject for f in report.failures] == [f"image:{ids[1]}", f"image:{ids[0]}"]
    assert report.failures[1].error == same_name(
        ids[0], ids[1], project.out / "publish/demo/P001/demo_P001_000001.jpg"
    )
    assert published(project) == before

    source.write_bytes(data)
    assert run(project.catalog, settings=project.settings, executor=executor).ok
    assert published(project) == expected(project, {ids[0]: 1, ids[1]: 2})
    assert verify(project.catalog, settings=project.settings) == []
