"""`camagent finder …`: find camagent devices on the LAN and act on them (docs/design.md §5)."""
