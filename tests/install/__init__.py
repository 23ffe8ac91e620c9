"""install.sh and the mock cloud's serving of it (issue 5)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
