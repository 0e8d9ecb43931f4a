"""Real captures for pipeline tests: rig shots rendered from a synthetic scene, and single 360° images."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from panopipe.catalog import Catalog, ImageRecord
from panopipe.config import Settings
from panopipe.demo import demo_rig
from panopipe.metadata.jpeg import scan_segments
from panopipe.stitching import RigProfile, render_views, synthetic_panorama

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
RIG = demo_rig(96, 72)


def jpeg(pixels: Any, quality: int = 90, icc_profile: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "JPEG", quality=quality, icc_profile=icc_profile)
    return buffer.getvalue()


def damaged(data: bytes) -> bytes:
    """``data`` (a JPEG) with the middle third of its entropy-coded data zeroed, as a bad sector of a card leaves
    a file: its header intact, so that ingest reads it as any other."""
    _, sos, _ = scan_segments(data)
    third = (len(data) - sos) // 3
    return data[: sos + third] + bytes(third) + data[sos + 2 * third :]


def record(path: Path, data: bytes, n: int, **fields: Any) -> ImageRecord:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    values: dict[str, Any] = {
        "uri": str(path),
        "size": len(data),
        "content_hash": hashlib.sha256(data).hexdigest(),
        "captured_at": T0 + timedelta(seconds=n),
        "utc_offset_minutes": 120,
        "lat": 48.1 + n * 1e-4,
        "lon": 11.5 + n * 1e-4,
        "alt": 520.0,
        "heading": 90.0,
        "make": "Acme",
        "model": "Rig-6",
        "reel": "R001",
        "frame": n,
    }
    return ImageRecord(**(values | fields))


def add_rig_shots(
    catalog: Catalog,
    root: Path,
    shots: int,
    *,
    rig: RigProfile = RIG,
    skip_camera: dict[int, int] | None = None,
    icc_profiles: dict[int, bytes] | None = None,
) -> None:
    """``shots`` shots of ``rig`` (frame n of camera i at root/R001/cam{i}/frame_{n}.jpg); ``skip_camera``
    leaves out camera ``skip_camera[n]`` of shot n; camera i's frames carry ``icc_profiles[i]`` if given."""
    records = []
    for n in range(shots):
        views = render_views(synthetic_panorama(256, 128, seed=n), rig)
        for i, view in enumerate(views):
            if skip_camera and skip_camera.get(n) == i:
                continue
            path = root / "R001" / f"cam{i}" / f"frame_{n:06d}.jpg"
            data = jpeg(view, icc_profile=(icc_profiles or {}).get(i))
            records.append(record(path, data, n, camera_index=i, width=rig.cameras[i].width))
    catalog.upsert_images(records)
    catalog.assign_shots(["R001"], 0.05)


def add_panoramas(
    catalog: Catalog, root: Path, count: int, *, size: tuple[int, int] = (256, 128), numbered: bool = True
) -> list[str]:
    """``count`` single equirectangular 360° images in reel P001 (without ``numbered``: no reel and no frame,
    as straight from a 360° camera); their ids by frame."""
    records = [
        record(
            root / "P001" / f"pano_{n:06d}.jpg",
            jpeg(synthetic_panorama(*size, seed=100 + n)),
            n,
            **({"reel": "P001"} if numbered else {"reel": None, "frame": None}),
            projection="equirectangular",
            width=size[0],
            height=size[1],
        )
        for n in range(count)
    ]
    result = catalog.upsert_images(records)
    return list(result.added)


@dataclass
class Project:
    catalog: Catalog
    root: Path
    out: Path
    settings: Settings

    def with_steps(self, **tables: dict[str, Any]) -> Settings:
        steps = {name.replace("_", "-"): table for name, table in tables.items()}
        return Settings(project="demo", steps={**self.settings.steps, **steps})


def panorama_project(catalog: str, folder: Path) -> Path:
    """3 panoramas in the catalog at ``catalog`` and a ``panopipe.toml`` in ``folder`` (outputs in
    ``folder/out``, derive without preview), for tests through the command line; the config file."""
    with Catalog.open(catalog) as opened:
        add_panoramas(opened, folder / "captures", 3)
    config = folder / "panopipe.toml"
    config.write_text(
        f'[panopipe]\nproject = "demo"\n\n[steps.pipeline]\noutput = "{folder / "out"}"\n\n'
        "[steps.derive]\nthumbnail = 64\npreview = 0\n",
        encoding="utf-8",
    )
    return config
