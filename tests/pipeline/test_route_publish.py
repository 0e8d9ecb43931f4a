"""Published files named by route and milepost: a changed centerline, located again, renames them."""

from __future__ import annotations

from pyproj import Geod
from tests.pipeline.captures import Project, add_panoramas

from panopipe.catalog.routes import Route
from panopipe.pipeline import plan, run
from panopipe.routes import locate_images

LINE = ((11.4999, 48.0999), (11.5012, 48.1012))  # the panoramas' diagonal, from 48.1 N 11.5 E


def test_route_and_milepost_name_published_files_and_a_new_centerline_renames_them(
    project: Project, executor
):
    add_panoramas(project.catalog, project.root, 4)
    settings = project.with_steps(publish={"template": "{route}/mp{mp:07.3f}.jpg"})
    project.catalog.add_route(Route("US-1", LINE, None, 12.0, "km"))
    locate_images(project.catalog)
    report = run(project.catalog, settings=settings, executor=executor)
    assert not report.failures
    published = sorted(p.name for p in (project.out / "publish" / "US-1").glob("mp*[0-9].jpg"))
    measures = sorted(image.measure for image in project.catalog.images())
    assert published == [f"mp{m:07.3f}.jpg" for m in measures]
    # The panoramas lie on the line, each 1e-4 degrees north and east of the one before.
    geod = Geod(ellps="WGS84")
    truth = [12.0 + geod.inv(*LINE[0], 11.5 + n * 1e-4, 48.1 + n * 1e-4)[2] / 1000 for n in range(4)]
    assert max(abs(m - t) for m, t in zip(measures, truth, strict=True)) < 1e-4  # 0.1 m

    project.catalog.add_route(Route("US-1", LINE, None, 20.0, "km"), replace=True)
    locate_images(project.catalog)

    stale = [(item.step, item.reason) for item in plan(project.catalog, settings=settings)]
    assert stale == [("publish", "input changed")] * 4  # only what is named from the measures
    assert not run(project.catalog, settings=settings, executor=executor).failures
    renamed = sorted(p.name for p in (project.out / "publish" / "US-1").glob("mp02*[0-9].jpg"))
    assert renamed == [f"mp{m + 8:07.3f}.jpg" for m in measures]
