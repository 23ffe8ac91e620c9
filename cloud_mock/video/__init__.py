"""Live video in the mock cloud: pullers, the fMP4 splitter, thumbnails, the archive."""
