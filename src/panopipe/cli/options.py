"""Options shared by several commands, defined once.

``@uses_catalog`` adds ``--catalog`` and ``--config`` to a command and passes it the opened ``catalog`` and
the ``settings``; ``@uses_selection`` adds the selection filters of ``ls`` and passes a ``selection``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import shlex
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from panopipe.catalog.values import parse_time
from panopipe.cli import render
from panopipe.config import ENV_CATALOG, ENV_CONFIG, Settings, load_settings
from panopipe.errors import ConfigError
from panopipe.locations import url_scheme

if TYPE_CHECKING:
    from panopipe.catalog import Catalog, Selection

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change without changing anything.")
]
CatalogOption = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        "-c",
        help=(
            "Catalog: a SQLite path, a postgresql:// URL or cloudformation://STACK. "
            f"Default: ${ENV_CATALOG}, the config file, ./panopipe.db."
        ),
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="Project config file. Default: ./panopipe.toml if present.", show_default=False
    ),
]


def _parameters(**annotations: Any) -> list[inspect.Parameter]:
    return [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, annotation in annotations.items()
    ]


MAX_WORKERS = 256
"""The most of any ``--workers``: each is a thread or a process, and a count past it is a typo (100,000 had forked
for minutes)."""

_INJECTED = frozenset({"catalog", "settings", "selection"})


def _extend(
    wrapper: Callable[..., Any], command: Callable[..., Any], remove: set[str], add: list[inspect.Parameter]
) -> None:
    """Give ``wrapper`` the parameters of ``command`` less ``remove``, plus ``add``, for Typer to read.

    The annotations of the arguments the decorators pass (``catalog: Catalog``...) are left unevaluated: their
    types may be imported for type checking only, so that building the command line does not load the library.
    """
    signature = inspect.signature(command)
    namespace = inspect.unwrap(command).__globals__

    def evaluated(annotation: Any) -> Any:
        return eval(annotation, namespace) if isinstance(annotation, str) else annotation

    kept = [
        p if name in _INJECTED else p.replace(annotation=evaluated(p.annotation))
        for name, p in signature.parameters.items()
        if name not in remove
    ]
    parameters = [*kept, *add]
    returns = evaluated(signature.return_annotation)
    # inspect and Typer read __signature__ off any callable; the Callable type does not declare it.
    wrapper.__signature__ = signature.replace(parameters=parameters, return_annotation=returns)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returns}


def local_file(value: str | Path) -> Path:
    """The path an output option names; for ``parser=``, which gets the value as given (typed ``Path``, a value
    is one already, and ``s3://b/x.csv`` has become ``s3:/b/x.csv``). A URL but a ``file://`` one is a
    :class:`~panopipe.errors.ConfigError` quoting it: panopipe writes its output files locally."""
    from panopipe.storage import local_path

    if isinstance(value, Path):  # the option's default, given as a Path
        return value
    scheme = url_scheme(value)
    path = local_path(value) if scheme in (None, "file") else None
    if path is None:
        copy = f" (aws s3 cp FILE {shlex.quote(value)})" if scheme == "s3" else ""
        raise ConfigError(
            f"cannot write {value}: output files are written locally, not to a URL; write a local file and "
            f"copy it there{copy}"
        )
    return path


def writable_file(path: Path | None) -> Path | None:
    """``path`` if a file can be written there (checked before the command works); a
    :class:`~panopipe.errors.ConfigError` saying why not otherwise. For ``callback=`` of output options."""
    if path is None:
        return None
    if path.is_dir():
        reason = "it is a folder; give a file name"
    elif not path.parent.is_dir():
        exists = path.parent.exists()
        reason = (
            f"{path.parent} is a file, not a folder" if exists else f"folder {path.parent} does not exist"
        )
    elif path.exists() and not path.is_file():  # a device or FIFO: opening one to try may block, or end it
        if os.access(path, os.W_OK):
            return path
        reason = "permission denied"
    else:
        written = Path(os.path.realpath(path))  # a link is kept: the file it names is written
        existed = written.exists()
        try:
            with written.open("ab"):
                pass
        except OSError as exc:
            reason = exc.strerror or str(exc)
        else:
            if not existed:
                written.unlink()
            return path
    raise ConfigError(f"cannot write {path}: {reason}")


def output_file(path: Path | None) -> Path | None:
    """:func:`writable_file` for an output that goes to stdout by default: ``-`` means stdout too."""
    return None if path is None or str(path) == "-" else writable_file(path)


def output_option(*names: str, help: str, stdout: bool = True) -> Any:
    """An option naming the file a command writes: a local path, checked before the command works (a URL is
    refused as given: :func:`local_file`); ``-``, stdout (:func:`output_file`) unless not ``stdout``."""
    check = output_file if stdout else writable_file
    return typer.Option(*names, help=help, parser=local_file, callback=check, metavar="<path>")


def warn_if_nothing_selected(
    catalog: Catalog, selection: Selection, *, mistakes_stop: str | None = None
) -> bool:
    """Warn when filters are given and select no image (a mistyped reel or shot: named, with the closest
    reel), and say so (True): the command then finds nothing to do, which would otherwise read as "all done".
    Not an error: a scheduled ``run --since`` with nothing new is normal. A reel or shot the catalog does not
    have beside others that select images is warned of too (the command goes on with those).

    With ``mistakes_stop`` (what the command did instead: ``nothing exported``), for a command whose answer
    would replace something (an export's file), filters that name what the catalog does not have are a
    :class:`~panopipe.errors.NotFoundError`: a reel or shot it does not have (whatever the others select: the
    file would lack it), or, when nothing is selected, coordinates that the other way round would select some."""
    if selection.selects_all:
        return False
    unknown = [name.describe() for name in catalog.unknown_names(selection)]
    selected = catalog.count(selection)
    if mistakes_stop is not None:
        from panopipe.errors import NotFoundError

        hint = None if selected else catalog.swapped_hint(selection)
        if unknown or hint:
            raise NotFoundError(f"{mistakes_stop}: {'; '.join([*unknown, *filter(None, [hint])])}")
    if selected:
        for name in unknown:
            render.warn(name)
        return False
    render.warn(catalog.no_match(selection, "the filters"))
    return True


def open_settings(catalog: str | None, config: Path | None) -> Settings:
    """Settings for a command from its ``--catalog`` and ``--config`` options; a config file's unknown keys
    are errors for every command, whether it reads their tables or not."""
    from panopipe.project_config import check_config_file

    settings = load_settings(config, catalog=catalog)
    if settings.local_project:
        check_config_file(settings)
    return settings


@contextlib.contextmanager
def config_of_the_command(config: Path | None) -> Iterator[None]:
    """While the command runs, its ``--config FILE`` is also ``$PANOPIPE_CONFIG``: what loads settings of its
    own (storage opened by a URI, the local pool's worker processes) reads the same file, not the current
    folder's ``panopipe.toml`` (an S3 endpoint set there took requests to AWS instead)."""
    if config is None:
        yield
        return
    before = os.environ.get(ENV_CONFIG)
    os.environ[ENV_CONFIG] = str(config.resolve())
    try:
        yield
    finally:
        if before is None:
            del os.environ[ENV_CONFIG]
        else:
            os.environ[ENV_CONFIG] = before


def uses_catalog(command: Callable[..., Any] | None = None, *, create: bool = False) -> Callable[..., Any]:
    """Give ``command`` the options ``--catalog``/``--config`` and the arguments ``catalog`` and ``settings``.

    The catalog must exist, unless ``create`` (``@uses_catalog(create=True)``, for the commands that make one).
    A ``selection`` from :func:`uses_selection` gets its ids resolved: full or short, as ``ls`` shows them.
    """
    if command is None:
        return functools.partial(uses_catalog, create=create)

    @functools.wraps(command)
    def wrapper(
        *args: Any, catalog_location: str | None = None, config: Path | None = None, **kwargs: Any
    ) -> Any:
        from panopipe.catalog import Catalog

        settings = open_settings(catalog_location, config)
        new_file = _absent_sqlite_file(settings.catalog) if create else None
        try:
            with (
                config_of_the_command(config),
                Catalog.open(settings.catalog, create=create, settings=settings) as catalog,
            ):
                if kwargs.get("selection") is not None:  # @uses_selection's filters: --id takes short ids
                    kwargs["selection"] = catalog.resolve_ids(kwargs["selection"])
                return command(*args, catalog=catalog, settings=settings, **kwargs)
        except BaseException:
            if new_file is not None:
                with contextlib.suppress(Exception):  # the command's own error is the one to tell
                    _discard_if_empty(new_file)
            raise

    _extend(
        wrapper,
        command,
        {"catalog", "settings"},
        _parameters(catalog_location=CatalogOption, config=ConfigOption),
    )
    return wrapper


def _absent_sqlite_file(location: str | None) -> Path | None:
    """The SQLite file ``location`` names (a path or ``sqlite:///PATH``, as
    :func:`~panopipe.catalog.catalog_url` reads it: ``~`` is the home folder) if it does not exist yet."""
    from panopipe.catalog import catalog_url
    from panopipe.locations import url_scheme

    if not location or url_scheme(location) not in (None, "sqlite"):
        return None
    path = Path(catalog_url(location).database or "")
    return None if path.exists() else path


def _discard_if_empty(path: Path) -> None:
    """Delete the SQLite catalog a failed command made at ``path`` (a mistyped source, an unreachable
    bucket) if it holds no image: a later read says "no catalog" instead of showing an empty one."""
    from panopipe.catalog import Catalog, Selection

    if not path.exists():
        return
    with Catalog.open(path, create=False) as catalog:
        if catalog.count(Selection(include_deleted=True)):
            return
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


SELECTION_OPTIONS = {
    "ids": Annotated[
        list[str] | None,
        typer.Option("--id", help="Image id, full or short (repeatable).", show_default=False),
    ],
    "reel": Annotated[
        list[str] | None, typer.Option("--reel", help="Reel name (repeatable).", show_default=False)
    ],
    "shot": Annotated[
        list[str] | None, typer.Option("--shot", help="Shot id (repeatable).", show_default=False)
    ],
    "since": Annotated[
        str | None,
        typer.Option("--since", help="Captured at or after, ISO 8601 with zone.", show_default=False),
    ],
    "until": Annotated[
        str | None, typer.Option("--until", help="Captured before, ISO 8601 with zone.", show_default=False)
    ],
    "bbox": Annotated[
        str | None,
        typer.Option(
            "--bbox",
            help="MINLON,MINLAT,MAXLON,MAXLAT in degrees (MINLON above MAXLON: across ±180°).",
            show_default=False,
        ),
    ],
    "near": Annotated[
        str | None, typer.Option("--near", help="LAT,LON in degrees; needs --radius.", show_default=False)
    ],
    "radius": Annotated[
        float | None, typer.Option("--radius", help="Metres around --near.", show_default=False)
    ],
    "status": Annotated[str | None, typer.Option("--status", help="ok or failed.", show_default=False)],
    "flag": Annotated[
        list[str] | None,
        typer.Option(
            "--flag", help="Flagged by `panopipe qc`, e.g. gps-outlier (repeatable).", show_default=False
        ),
    ],
}


def _numbers(text: str, count: int, option: str, form: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise ConfigError(f"invalid {option} {text!r}: expected {form}")
    return values


def build_selection(
    ids: list[str] | None = None,
    reel: list[str] | None = None,
    shot: list[str] | None = None,
    since: str | None = None,
    until: str | None = None,
    bbox: str | None = None,
    near: str | None = None,
    radius: float | None = None,
    status: str | None = None,
    flag: list[str] | None = None,
) -> Selection:
    """The :class:`Selection` described by the command-line filters."""
    from panopipe.catalog import Selection

    since_at: datetime | None = parse_time(since) if since else None
    until_at: datetime | None = parse_time(until) if until else None
    box = point = None
    if bbox:
        min_lon, min_lat, max_lon, max_lat = _numbers(bbox, 4, "--bbox", "MINLON,MINLAT,MAXLON,MAXLAT")
        box = (min_lon, min_lat, max_lon, max_lat)
    if near:
        lat, lon = _numbers(near, 2, "--near", "LAT,LON")
        point = (lat, lon)
    return Selection(
        ids=tuple(ids or ()),
        reels=tuple(reel or ()),
        shots=tuple(shot or ()),
        since=since_at,
        until=until_at,
        bbox=box,
        near=point,
        radius_m=radius,
        status=status,
        flags=tuple(flag or ()),
    )


def uses_selection(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` the selection filters of ``ls`` and the argument ``selection``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        filters = {name: kwargs.pop(name, None) for name in SELECTION_OPTIONS}
        return command(*args, selection=build_selection(**filters), **kwargs)

    _extend(wrapper, command, {"selection"}, _parameters(**SELECTION_OPTIONS))
    return wrapper


__all__ = [
    "MAX_WORKERS",
    "SELECTION_OPTIONS",
    "CatalogOption",
    "ConfigOption",
    "DryRunOption",
    "JsonOption",
    "build_selection",
    "config_of_the_command",
    "local_file",
    "open_settings",
    "output_file",
    "output_option",
    "uses_catalog",
    "uses_selection",
    "warn_if_nothing_selected",
    "writable_file",
]
