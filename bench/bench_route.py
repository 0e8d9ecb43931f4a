"""Benchmark: locating images along a route (milepost and offset), against the generator's truth.

A 50 km meandering route from the demo's start (``panopipe.qc.synthetic.synthetic_route``) and points beside
it at known geodesic measures and offsets. Reports the largest measure and offset errors (goal: within 0.1 m)
and images per second (goal: at least 100,000 images/s), beside the reference measured in the same run: the
loop people write first, shapely's ``line.project`` per point in the same projection (no geodesic lengths).

    python bench/bench_route.py [--quick] [--images 100000] [--runs 7] [--json out.json]
"""

from __future__ import annotations

import numpy as np
import shapely

import fair
from panopipe.qc.geometry import local_projection
from panopipe.qc.synthetic import SyntheticRoute, synthetic_route
from panopipe.routes import measure_points


def project_loop(synthetic: SyntheticRoute) -> np.ndarray:
    """The reference: per point, shapely's ``project`` on the projected line, in km from the start measure."""
    vertices = np.asarray(synthetic.route.coordinates)
    transformer = local_projection(float(np.median(vertices[:, 1])), float(np.median(vertices[:, 0])))
    line = shapely.LineString(np.column_stack(transformer.transform(vertices[:, 0], vertices[:, 1])))
    x, y = transformer.transform(synthetic.lon, synthetic.lat)
    start = synthetic.route.start_measure or 0.0
    return np.array([start + line.project(shapely.Point(px, py)) / 1000 for px, py in zip(x, y, strict=True)])


def main() -> None:
    args = fair.parse_args(__doc__, {"images": (100_000, 10_000)})
    synthetic = synthetic_route(args.images)
    with fair.report(args, "route") as report:
        measure, offset = measure_points(synthetic.route, synthetic.lat, synthetic.lon)
        error_m = np.abs(measure - synthetic.measure) * 1000
        report.note(
            f"panopipe: largest measure error {error_m.max():.4f} m, offset error "
            f"{np.abs(offset - synthetic.offset_m).max():.4f} m over {args.images:,} images on a 50 km route"
        )
        reference_m = np.abs(project_loop(synthetic) - synthetic.measure) * 1000
        report.note(f"reference: largest measure error {reference_m.max():.4f} m (projected lengths)")

        def ours() -> None:
            measure_points(synthetic.route, synthetic.lat, synthetic.lon)

        def loop() -> None:
            project_loop(synthetic)

        report.compare(
            {"panopipe measure_points": ours, "shapely line.project per point": loop},
            title="locate images along a 50 km route",
            unit="images",
            count=args.images,
            goal="at least 100,000 images/s, measures within 0.1 m",
        )


if __name__ == "__main__":
    main()
