"""The device's local HTTPS API and its mDNS announcement (DESIGN §5)."""
