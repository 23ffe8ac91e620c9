"""cloud_mock: a runnable stand-in for the cloud side of camagent (DESIGN §11).

Run it with `python -m cloud_mock`; start it from tests with `cloud_mock.testing`.
"""
