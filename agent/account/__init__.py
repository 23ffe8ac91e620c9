"""`camagent cloud …`: server profiles and sessions in the cloud (DESIGN §4)."""
