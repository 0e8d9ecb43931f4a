"""NadirStep's parameters: what makes a cap stale."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from panopipe.catalog import Catalog
from panopipe.config import Settings
from panopipe.pipeline import load_pipeline


def test_how_a_logo_is_fitted_is_a_parameter_of_the_caps_with_a_logo_only(tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    Image.new("RGBA", (400, 100), (255, 0, 0, 255)).save(logo)
    with Catalog.open(str(tmp_path / "c.db"), create=True) as catalog:
        [plain] = load_pipeline(catalog, Settings(project="p", steps={"nadir": {}}), ["nadir"]).steps
        with_logo = Settings(project="p", steps={"nadir": {"logo": str(logo)}})
        [logoed] = load_pipeline(catalog, with_logo, ["nadir"]).steps

    # a cap without a logo keeps the parameters it had: an upgrade makes none of those stale
    assert plain.params == {"angle_deg": 20.0, "fill": "blur", "quality": 92}
    # a logo had been stretched to a square: the caps drawn so are made again, their proportions kept
    assert logoed.params["logo_fit"] == "contain"
