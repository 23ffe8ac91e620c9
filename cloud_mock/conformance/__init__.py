"""The protocol as a published contract: the documents (docs/api/) and the conformance
kit `camagent-conformance URL` that checks any cloud against them (test side only)."""
