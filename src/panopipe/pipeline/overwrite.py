"""The files a command's output file (``export -o``, ``report --html``) must not replace: those the project works
from, the pipeline's outputs among them."""

from __future__ import annotations

from pathlib import Path

from panopipe.catalog import Catalog
from panopipe.errors import ConfigError
from panopipe.pipeline.store import outputs_at
from panopipe.storage import local_uris


def refuse_overwrite(catalog: Catalog, *paths: Path) -> None:
    """:class:`~panopipe.errors.ConfigError` when writing one of ``paths`` would replace a file the project
    works from: one of the catalog's (:meth:`Catalog.refuse_overwrite`: its database, the config file in use,
    an image) or an output the pipeline recorded (a stitched panorama, a published image), links resolved."""
    for path in paths:
        catalog.refuse_overwrite(path)
    names = {path: local_uris(path) for path in paths}
    made = outputs_at(catalog, {uri for uris in names.values() for uri in uris})
    for path, uris in names.items():
        for uri in uris:
            if uri in made:
                step, subject = made[uri]
                raise ConfigError(
                    f"cannot write {path}: it is an output of the pipeline ({step} {subject}); give another name"
                )


__all__ = ["refuse_overwrite"]
