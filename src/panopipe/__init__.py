"""panopipe: catalog and reprocess geotagged 360° corridor imagery, on a laptop and in AWS."""

__version__ = "0.1.0"


__all__: list[str] = []
