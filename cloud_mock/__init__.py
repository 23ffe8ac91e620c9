"""cloud_mock: a runnable stand-in for the cloud side of camagent.

Run it with `python -m cloud_mock`; start it from tests with `cloud_mock.testing`.
"""

# The same release as the agent (a test checks); a literal, so that building this
# distribution needs nothing of the agent.
__version__ = "0.1.0"
