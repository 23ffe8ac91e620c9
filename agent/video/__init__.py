"""Video on the device: the tunnel to the cloud and the RTSP probe (docs/design.md §12)."""
