"""Every command hint is registered in agent/hints.py, and each one, rendered for a command
line, parses with camagent's own parser and names the same config, profile and device
(issue 26, item 2). tests/e2e/test_hints_e2e.py runs a representative set for real."""

from __future__ import annotations

import argparse
import ast
import html
import re
import shlex
import sys
from pathlib import Path

import pytest

from agent import hints
from agent.cli import build_parser, walk_commands

ROOT = Path(__file__).resolve().parents[2]
INVOCATIONS = [
    hints.Invocation(("/opt/my tools/camagent",), "/srv/cam a/agent.toml", "beta"),
    hints.Invocation((sys.executable, "-m", "agent"), "agent.toml", "lab 2"),
    hints.Invocation(("camagent",), None, None),
]


def _parse(text: str, program: tuple[str, ...]) -> argparse.Namespace:
    """The hint as a shell would split it, parsed by camagent's parser (stdin redirection
    is the shell's, not camagent's)."""
    words = shlex.split(text.split(" < ")[0])
    assert tuple(words[: len(program)]) == program, text
    return build_parser().parse_args(words[len(program) :])


@pytest.mark.parametrize("invocation", INVOCATIONS, ids=["path", "python -m", "plain"])
@pytest.mark.parametrize("name", sorted(hints.HINTS))
def test_every_hint_parses_and_names_the_same_config_profile_and_device(
    name: str, invocation: hints.Invocation
) -> None:
    hint = hints.HINTS[name]
    text = hints.show(name, invocation, **hint.example)
    if hint.scope == "device":
        # Run on the camera itself, where the package put `camagent` on PATH.
        args = _parse(text, ("camagent",))
        assert getattr(args, "config", None) is None
        return
    args = _parse(text, invocation.program)
    assert getattr(args, "config", None) == (invocation.config if hint.config else None)
    if hint.profile:
        assert args.profile == invocation.profile
    for key, value in hint.example.items():
        field = {"device": "device", "profile": "profile", "ca": "ca_file", "name": "name"}[key]
        assert getattr(args, field) == value, (text, key)


def test_a_hint_without_an_option_given_leaves_it_out() -> None:
    plain = hints.Invocation(("camagent",))
    assert hints.show("reset", plain) == "camagent reset"
    assert hints.show("cloud sessions end", plain) == "camagent cloud sessions end ID"
    spaced = hints.Invocation(("camagent",), "/tmp/a b/agent.toml", "my lab")
    assert hints.show("reset", spaced) == "camagent --config '/tmp/a b/agent.toml' reset"
    assert hints.show("cloud sessions end", spaced) == (
        "camagent cloud sessions end ID --profile 'my lab'"
    )


def test_the_daemons_words_become_the_commands_of_this_command_line() -> None:
    inv = hints.Invocation((sys.executable, "-m", "agent"), "/tmp/x.toml")
    prefix = shlex.join([sys.executable, "-m", "agent", "--config", "/tmp/x.toml"])
    said = "this NVR is linked to the cloud already (run `camagent reset` to unlink)"
    assert hints.relay(said, inv) == (
        f"this NVR is linked to the cloud already (run `{prefix} reset` to unlink)"
    )
    said = "no activation code yet: start camagent, it registers one"
    assert (
        hints.relay(said, inv) == f"no activation code yet: start `{prefix} run`, it registers one"
    )
    # Through the finder, the device's own reset is the finder's, for that device.
    said = "this device holds a token; run `camagent reset` first to provision again"
    finder = shlex.join([sys.executable, "-m", "agent", "finder", "reset", "cam.local"])
    assert hints.relay(said, inv, device="cam.local") == (
        f"this device holds a token; run `{finder}` first to provision again"
    )
    # Rendered once: relaying again changes nothing.
    once = hints.relay(said, hints.Invocation(), device="cam")
    assert hints.relay(once, hints.Invocation(), device="cam") == once
    assert hints.relay("see `camagent cloud servers list`") == "see `camagent cloud servers list`"


# The daemon's words, and the offline path's: they know nothing of the command line, and
# the CLI renders the commands they name (hints.relay).
RELAYED = {"agent/commands.py", "agent/daemon.py", "agent/offline.py"}


def test_every_command_the_daemon_or_the_offline_path_names_is_relayed() -> None:
    """Each command they name must be one that relay() renders, or it would be printed
    bare."""
    for module in sorted(RELAYED):
        for text in _string_constants(ROOT / module):
            for command in re.findall(r"`camagent ([^`]*)`", text):
                assert command in hints._DAEMON_WORDS, (module, command)


# Files that may still name a command as a literal "`camagent …`": their words are
# relayed (the daemon's), or they are not this owner's to change (reported).
LITERAL_OK = {
    *RELAYED,
    "agent/hints.py",
}


def test_no_command_hint_is_written_outside_the_registry() -> None:
    found: list[str] = []
    for path in sorted([*ROOT.glob("agent/**/*.py"), *ROOT.glob("cloud_mock/**/*.py")]):
        relative = str(path.relative_to(ROOT))
        if relative in LITERAL_OK or "conformance" in relative:
            continue
        for text in _string_constants(path):
            # A docstring may speak of a command; a message built from literals may not.
            found += [f"{relative}: {m}" for m in re.findall(r"`camagent [a-z][^`]*`", text)]
    assert found == [], "build these with agent.hints.show(): " + "; ".join(found)


def _string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def _device_hints() -> set[str]:
    return {hints.show(n) for n, h in hints.HINTS.items() if h.scope == "device"}


def test_every_command_the_console_shows_is_a_registered_device_hint() -> None:
    commands = {" ".join(path) for path, _, _ in walk_commands(build_parser())}
    seen = []
    for template in sorted((ROOT / "cloud_mock/console/templates").glob("*.html")):
        text = re.sub(r"\s+", " ", template.read_text(encoding="utf-8"))
        for code in re.findall(r"<code>(camagent [^<]*)</code>", text):
            shown = html.unescape(code)
            seen.append(shown)
            # Either a whole command to copy, registered, or just the command's name.
            assert shown in _device_hints() or shown.removeprefix("camagent ") in commands, (
                template.name,
                shown,
            )
    assert "camagent nvr register --token-file -" in seen  # the wizard's, runnable
    assert "camagent poll-now" in seen


def test_every_command_install_sh_names_is_one_camagent_has() -> None:
    commands = {" ".join(path) for path, _, _ in walk_commands(build_parser())}
    text = (ROOT / "install.sh").read_text(encoding="utf-8")
    named = re.findall(r"(?:run|then run): camagent ((?:[a-z][a-z-]* ?)+)", text)
    named += re.findall(r"\(`?camagent ([a-z][a-z-]*)`? unlinks", text)
    assert named
    for words in named:
        assert words.strip() in commands, words


@pytest.mark.parametrize(
    ("argv0", "expected"),
    [
        ("{tmp}/agent/__main__.py", "-m"),  # python -m agent
        ("{venv}", "path"),  # .venv/bin/camagent, not on PATH
    ],
)
def test_the_program_is_the_one_that_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv0: str, expected: str
) -> None:
    venv_camagent = Path(sys.executable).with_name("camagent")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(sys, "argv", [argv0.format(tmp=tmp_path, venv=venv_camagent)])
    if expected == "-m":
        assert hints.program() == (sys.executable, "-m", "agent")
    else:
        assert venv_camagent.exists()
        assert hints.program() == (str(venv_camagent.resolve()),)
        monkeypatch.setenv("PATH", f"{venv_camagent.parent}:/usr/bin:/bin")
        assert hints.program() == ("camagent",)


def test_every_registered_hint_is_printed_somewhere() -> None:
    """A registry entry nothing prints would be tested for nothing."""
    sources = "".join(
        path.read_text(encoding="utf-8")
        for path in [*ROOT.glob("agent/**/*.py"), *ROOT.glob("cloud_mock/**/*.py")]
        if path.name != "hints.py"
    )
    templates = "".join(
        html.unescape(re.sub(r"\s+", " ", path.read_text(encoding="utf-8")))
        for path in (ROOT / "cloud_mock/console/templates").glob("*.html")
    )
    unused = [
        name
        for name, hint in hints.HINTS.items()
        if f'"{name}"' not in sources
        and f"'{name}'" not in sources
        and not (hint.scope == "device" and hints.show(name) in templates)
    ]
    assert unused == []
