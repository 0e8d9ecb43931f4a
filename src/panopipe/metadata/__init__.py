"""Image metadata: read capture time, GPS, camera and panorama metadata from JPEG headers; write it back losslessly."""

from panopipe.metadata.reader import ImageMetadata, parse_jpeg_header, read_jpeg, read_metadata
from panopipe.metadata.writer import GPano, MetadataUpdate, apply_metadata, apply_metadata_file

__all__ = [
    "GPano",
    "ImageMetadata",
    "MetadataUpdate",
    "apply_metadata",
    "apply_metadata_file",
    "parse_jpeg_header",
    "read_jpeg",
    "read_metadata",
]
