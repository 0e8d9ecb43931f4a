"""Track quality control: GPS outliers, near-duplicates, stationary runs, sequence breaks, null-island fixes,
clocks going backwards and poor fixes, found per reel and stored as image flags; ``fix`` proposes corrections
as one edit.

Needs the optional extra ``qc`` (pyproj, shapely): ``pip install 'panopipe[qc]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from panopipe.lazy import lazy_attributes

_MODULES = {
    "FLAGS": "flag_names",
    "QcReport": "run",
    "QcSettings": "settings",
    "ReelSummary": "run",
    "check_track": "checks",
    "run_qc": "run",
}

if TYPE_CHECKING:
    from panopipe.qc.checks import check_track
    from panopipe.qc.flag_names import FLAGS
    from panopipe.qc.run import QcReport, ReelSummary, run_qc
    from panopipe.qc.settings import QcSettings

__getattr__ = lazy_attributes(__name__, _MODULES)

__all__ = ["FLAGS", "QcReport", "QcSettings", "ReelSummary", "check_track", "run_qc"]
