"""`camagent cloud …`: server profiles and sessions in the cloud (docs/design.md §4)."""
