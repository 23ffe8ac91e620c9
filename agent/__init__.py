"""camagent: connects Linux IP cameras and virtual NVRs to a cloud VMS."""

__version__ = "0.1.0"
