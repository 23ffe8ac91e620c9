"""`camagent finder …`: find camagent devices on the LAN and act on them (DESIGN §5)."""
