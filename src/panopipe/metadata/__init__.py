"""Image metadata: read capture time, GPS, camera and panorama metadata from JPEG headers."""

from panopipe.metadata.jpeg import read_jpeg_header
from panopipe.metadata.reader import ImageMetadata, parse_jpeg_header, read_metadata

__all__ = [
    "ImageMetadata",
    "parse_jpeg_header",
    "read_jpeg_header",
    "read_metadata",
]
