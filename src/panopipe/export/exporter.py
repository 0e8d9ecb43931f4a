"""One export, as ``panopipe export`` asks for it: what (images or panoramas), in which format, to where."""

from __future__ import annotations

import glob
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from panopipe.catalog import Catalog, Selection
from panopipe.config import Settings, did_you_mean, project_settings, settings_or_loaded
from panopipe.errors import ConfigError
from panopipe.export.formats import (
    csv_sidecars,
    geopackage_layers,
    iso_time,
    write_csv,
    write_csv_sidecars,
    write_geojson,
    write_gpkg,
)
from panopipe.export.images import images_table
from panopipe.export.oid import esri_time, oid_table, rig_mount_height
from panopipe.export.panoramas import load_panoramas, panoramas_table
from panopipe.export.sequences import load_sequences, sequences_table
from panopipe.export.table import Table
from panopipe.pipeline.overwrite import refuse_overwrite
from panopipe.qc.settings import QcSettings
from panopipe.storage import open_atomic, same_file

SUBJECTS = ("images", "panoramas", "sequences")
FORMATS = ("csv", "geojson", "gpkg", "oid")
# The format a file's extension names.
_FORMAT_OF_SUFFIX = {".csv": "csv", ".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg"}


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What to export: ``of`` images, panoramas or sequences (``oid`` is always panoramas), in ``format`` (none:
    the output file's extension says, CSV on stdout); the URL published files are served under, and the camera
    height for the Oriented Imagery table."""

    of: str | None = None
    format: str | None = None
    base_url: str | None = None
    camera_height_m: float | None = None

    def format_for(self, output: Path | None) -> str:
        """The format given, or else the one the output file's extension names (CSV on stdout);
        :class:`ConfigError` when the extension is unknown, or names another format than the one given."""
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"unknown --format {self.format!r}; {did_you_mean(self.format, FORMATS)}")
        named = _FORMAT_OF_SUFFIX.get(output.suffix.lower()) if output is not None else None
        if self.format is None:
            if output is not None and named is None:
                raise ConfigError(
                    f"cannot tell the format of {str(output)!r} from its extension: name the file .csv, "
                    ".geojson or .gpkg, or give --format (csv, geojson, gpkg or oid)"
                )
            return named or "csv"
        if named is not None and named != _file_format(self.format):
            raise ConfigError(
                f"{str(output)!r} names a {named} file, not {self.format}: use --format {named}, or a file name "
                "ending in "
                + next(suffix for suffix, of in _FORMAT_OF_SUFFIX.items() if of == _file_format(self.format))
            )
        return self.format

    def subject(self, export_format: str) -> str:
        """``images``, ``panoramas`` or ``sequences`` in ``export_format``; :class:`ConfigError` for options that
        do not go together."""
        if self.of is not None and self.of not in SUBJECTS:
            raise ConfigError(f"unknown --of {self.of!r}; {did_you_mean(self.of, SUBJECTS)}")
        if export_format == "oid" and self.of in ("images", "sequences"):
            raise ConfigError(
                "--format oid lists panoramas (360° images): use --of panoramas or leave --of out"
            )
        subject = "panoramas" if export_format == "oid" else self.of or "images"
        if self.base_url is not None and subject != "panoramas":
            raise ConfigError("--base-url names published files: use it with --of panoramas or --format oid")
        if self.camera_height_m is not None and export_format != "oid":
            raise ConfigError(
                "--camera-height is a field of the Oriented Imagery table: use it with --format oid"
            )
        return subject


@dataclass(frozen=True, slots=True)
class ExportResult:
    """``count`` rows of ``subject`` written to ``files`` (none: stdout); ``left_out`` had no position (GeoJSON)
    or no image or position (Oriented Imagery); ``kept``: the other layers of the GeoPackage written into."""

    subject: str
    count: int
    left_out: int
    files: tuple[Path, ...]
    kept: tuple[str, ...] = ()


def write_export(
    catalog: Catalog,
    options: ExportOptions,
    out: TextIO,
    *,
    output: Path | None = None,
    selection: Selection | None = None,
    settings: Settings | None = None,
) -> ExportResult:
    """Export the selected images or panoramas to ``output``, or to ``out`` when there is none (a GeoPackage
    needs a file). A CSV file gets ``.csvt`` and ``.prj`` sidecars."""
    export_format = options.format_for(output)
    subject = options.subject(export_format)
    gpkg = output if export_format == "gpkg" else None
    if export_format == "gpkg" and gpkg is None:
        raise ConfigError("--format gpkg writes a file: give --output FILE.gpkg")
    files = _output_files(catalog, output, export_format)
    table: Table
    if subject == "images":
        table = images_table(catalog, selection)
        total = len(table)
    elif subject == "sequences":
        qc = QcSettings.from_config(project_settings(catalog, settings_or_loaded(settings)).qc)
        sequences = load_sequences(catalog, selection, qc)
        total, table = len(sequences), sequences_table(sequences)
    else:
        found = load_panoramas(catalog, selection, settings, base_url=options.base_url)
        total, table = len(found), panoramas_table(found)
        if export_format == "oid":
            shots = any(p.kind == "shot" for p in found)
            rig_height = (
                rig_mount_height(catalog, settings) if shots and options.camera_height_m is None else None
            )
            table = oid_table(found, rig_height_m=rig_height, camera_height_m=options.camera_height_m)
    if gpkg is not None:
        count = write_gpkg(table, gpkg)
        kept = tuple(name for name in geopackage_layers(gpkg) if name != table.name)
        return ExportResult(subject, count, total - count, (gpkg,), kept)
    if output is None:
        count = _write_text(table, export_format, out)
        return ExportResult(subject, count, total - count, ())
    with open_atomic(output) as raw:  # a failed export leaves the previous file as it was
        handle = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        try:
            count = _write_text(table, export_format, handle)
        finally:
            handle.detach()  # flushed; open_atomic closes the file
    write_csv_sidecars(table, files[1:])
    return ExportResult(subject, count, total - count, files)


def _output_files(catalog: Catalog, output: Path | None, export_format: str) -> tuple[Path, ...]:
    """The files an export to ``output`` writes: ``output``, then a CSV's sidecars. :class:`ConfigError`
    when one is a file the project works from (:func:`~panopipe.pipeline.overwrite.refuse_overwrite`), a
    sidecar is ``output`` itself, or a file already there that is not one of a CSV being replaced
    (``roads.prj`` of the shapefile ``roads.shp``): checked before any is written."""
    if output is None:
        return ()
    sidecars = csv_sidecars(output) if _file_format(export_format) == "csv" else []
    refuse_overwrite(catalog, output, *sidecars)
    for sidecar in sidecars:
        if same_file(sidecar, output):
            raise ConfigError(
                f"cannot write {output}: its {sidecar.suffix} sidecar would overwrite it; name it .csv"
            )
        if sidecar.exists() and not output.exists():
            raise ConfigError(
                f"cannot write {output}: {sidecar} exists and {_whose(sidecar, sidecars)}; give the export "
                "another name, or remove that file"
            )
    return (output, *sidecars)


def _whose(sidecar: Path, sidecars: list[Path]) -> str:
    """Whose ``sidecar``, there already, is: the files beside it of its name but the suffix (``x.csv``'s, when
    ``x.oid`` is written after it), or none of a CSV export (a shapefile's ``.prj``)."""
    owners = [path.name for path in sorted(sidecar.parent.glob(f"{glob.escape(sidecar.stem)}.*"))]
    owners = [name for name in owners if name not in {path.name for path in sidecars}]
    if owners:
        return f"is the sidecar of {' or '.join(owners)}, whose name it shares but the suffix"
    return "is not of a CSV export (it may be a shapefile's)"


def _file_format(export_format: str) -> str:
    """The kind of file ``export_format`` writes: the Oriented Imagery table is a CSV."""
    return "csv" if export_format == "oid" else export_format


def _write_text(table: Table, export_format: str, out: TextIO) -> int:
    if export_format == "geojson":
        return write_geojson(table, out)
    return write_csv(table, out, esri_time if export_format == "oid" else iso_time)


__all__ = ["FORMATS", "SUBJECTS", "ExportOptions", "ExportResult", "write_export"]
