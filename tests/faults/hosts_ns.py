"""Run a command with its own /etc/hosts: `unshare --mount -- python -m tests.faults.hosts_ns
HOSTS -- COMMAND...` (argument vectors only).

Inside the private mount namespace that `unshare` made, HOSTS is bind-mounted over
/etc/hosts and a one-line nsswitch.conf (`hosts: files`) over /etc/nsswitch.conf, so
names resolve from HOSTS alone and never reach a real DNS server. glibc reads /etc/hosts
on every lookup, so rewriting HOSTS in place (same inode) changes what the running
command resolves: that is how the tests make a name fail and then resolve. It also lets
`localhost` (the name in the mock's certificate and in its tokens) point at the proxy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:  # noqa: RET503 - execvp does not return
    if len(argv) < 3 or argv[1] != "--":
        print("usage: hosts_ns HOSTS -- COMMAND...", file=sys.stderr)
        return 2
    hosts = Path(argv[0]).resolve()
    nsswitch = hosts.with_name(hosts.name + ".nsswitch.conf")
    nsswitch.write_text("hosts: files\n")
    for source, target in ((hosts, "/etc/hosts"), (nsswitch, "/etc/nsswitch.conf")):
        subprocess.run(["mount", "--bind", str(source), target], check=True)
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
