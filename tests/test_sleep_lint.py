"""No sleep in the tests without a comment saying why time itself is the subject.

A test that sleeps and then asserts is slow on an idle machine and flaky on a loaded one;
waiting for a condition is `tests/eventually.py`'s job. A sleep stays only where the
passing of time is what the test is about ("no poll for two fast intervals", "the slow
peer sends in two parts"), and then it says so where it is written:

    time.sleep(1.0)  # time is the subject: two fast intervals with no poll after the kill

or on the line (or comment block) just above the call. This lint walks the test tree with
`ast` and finds every call of `time.sleep`, `asyncio.sleep`, `anyio.sleep`, `trio.sleep`
(by module attribute, by a name imported from the module, or by a name assigned from one)
and every `.wait_for_timeout(...)` (Playwright's sleep). `sleep(0)` is not counted: it
yields to the event loop once and waits no time.

The benchmarks (benchmarks/) are left out: measuring over time is what they do.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREES = ("tests",)
MARKER = re.compile(r"#.*\btime is the subject:\s*\S", re.IGNORECASE)
SLEEP_MODULES = frozenset({"time", "asyncio", "anyio", "trio"})

# The polling helper's own waits between checks: the one place a polling sleep belongs.
EXEMPT_FILES = frozenset({"tests/eventually.py"})

# TEMPORARY: sleeps without the marker in files other helpers are changing right now
# (issue 24); each is either given its reason or replaced by tests/eventually.py there,
# and then its entry goes. Keyed by file and enclosing function, not by line, so that edits
# elsewhere in the file do not break the lint; the number is how many such sleeps it may
# hold. An entry that is no longer needed fails `test_the_allowlist_holds_no_stale_entry`.
TEMPORARY_ALLOWLIST: dict[str, int] = {}


@dataclass(frozen=True)
class Sleep:
    path: str  # relative to the checkout, with forward slashes
    line: int
    function: str  # the innermost enclosing def, "<module>" at top level
    call: str  # the call as written, for messages
    justified: bool  # the marker comment is on its line or just above it

    @property
    def key(self) -> str:
        return f"{self.path}::{self.function}"


def _comments(source: str) -> dict[int, str]:
    """Each line's comment, by line number."""
    found: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string
    return found


def _sleep_names(tree: ast.Module) -> set[str]:
    """Bare names that are a sleep in this module: `from time import sleep [as s]`, and
    `real_sleep = asyncio.sleep` (a test that patches the module's sleep keeps the real one)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in SLEEP_MODULES:
            names.update(a.asname or a.name for a in node.names if a.name == "sleep")
        elif isinstance(node, ast.Assign) and _is_module_sleep(node.value):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _is_module_sleep(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "sleep"
        and isinstance(node.value, ast.Name)
        and node.value.id in SLEEP_MODULES
    )


def _is_sleep_call(call: ast.Call, names: set[str]) -> bool:
    func = call.func
    waits = (
        _is_module_sleep(func)
        or (isinstance(func, ast.Name) and func.id in names)
        or (isinstance(func, ast.Attribute) and func.attr == "wait_for_timeout")
    )
    # sleep(0) yields to the loop and waits no time
    no_time = bool(call.args) and isinstance(call.args[0], ast.Constant) and call.args[0].value == 0
    return waits and not no_time


def _justified(line: int, comments: dict[int, str], lines: list[str]) -> bool:
    if MARKER.search(comments.get(line, "")):
        return True
    # the block of comment-only lines just above
    above = line - 1
    while above >= 1 and lines[above - 1].strip().startswith("#"):
        if MARKER.search(comments.get(above, "")):
            return True
        above -= 1
    return False


class _Finder(ast.NodeVisitor):
    def __init__(self, path: str, source: str, tree: ast.Module) -> None:
        self.path = path
        self.lines = source.splitlines()
        self.comments = _comments(source)
        self.names = _sleep_names(tree)
        self.stack: list[str] = []
        self.found: list[Sleep] = []

    def _in_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = _in_function
    visit_AsyncFunctionDef = _in_function

    def visit_Call(self, node: ast.Call) -> None:
        if _is_sleep_call(node, self.names):
            self.found.append(
                Sleep(
                    path=self.path,
                    line=node.lineno,
                    function=self.stack[-1] if self.stack else "<module>",
                    call=ast.unparse(node),
                    justified=_justified(node.lineno, self.comments, self.lines),
                )
            )
        self.generic_visit(node)


def sleeps_in(path: str, source: str) -> list[Sleep]:
    """Every sleep call in one file's source."""
    tree = ast.parse(source, filename=path)
    finder = _Finder(path, source, tree)
    finder.visit(tree)
    return finder.found


@functools.cache
def all_sleeps() -> tuple[Sleep, ...]:
    found: list[Sleep] = []
    for tree in TREES:
        for file in sorted((ROOT / tree).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            if path not in EXEMPT_FILES:
                found.extend(sleeps_in(path, file.read_text(encoding="utf-8")))
    return tuple(found)


def _unjustified() -> Counter[str]:
    return Counter(s.key for s in all_sleeps() if not s.justified)


def test_every_sleep_says_why_time_is_the_subject() -> None:
    unjustified = [s for s in all_sleeps() if not s.justified]
    allowed = dict(TEMPORARY_ALLOWLIST)
    offending: list[Sleep] = []
    for sleep in unjustified:
        if allowed.get(sleep.key, 0) > 0:
            allowed[sleep.key] -= 1
        else:
            offending.append(sleep)
    assert not offending, (
        "sleeps without '# time is the subject: <why>' (wait with tests/eventually.py "
        "instead, unless time itself is what the test is about):\n"
        + "\n".join(f"  {s.path}:{s.line}: {s.call}" for s in offending)
    )


def test_the_allowlist_holds_no_stale_entry() -> None:
    counts = _unjustified()
    stale = {key: n for key, n in TEMPORARY_ALLOWLIST.items() if counts[key] < n}
    assert not stale, (
        "TEMPORARY_ALLOWLIST allows more unexplained sleeps than these hold now: lower "
        "or remove their entries: " + ", ".join(f"{k} ({counts[k]} left)" for k in stale)
    )


# The lint's own rules, on small sources ----------------------------------------------------

SAMPLE = """\
import asyncio
import time
from time import sleep as nap

real_sleep = asyncio.sleep


async def waits(page):
    time.sleep(1)  # time is the subject: two intervals pass with no poll
    # the peer sends its answer in two parts;
    # time is the subject: the device must see the gap
    await asyncio.sleep(0.1)
    await asyncio.sleep(0)
    nap(2)
    await real_sleep(0.5)
    await page.wait_for_timeout(300)
    time.sleep(0.2)  # time is the subject:
    text = "time.sleep(60)"
"""


def test_the_lint_finds_each_form_of_sleep_and_reads_the_marker() -> None:
    found = sleeps_in("sample.py", SAMPLE)
    assert [(s.line, s.justified) for s in found] == [
        (9, True),
        (12, True),
        (14, False),
        (15, False),
        (16, False),
        (17, False),  # a marker with no reason after it does not count
    ]
    assert {s.function for s in found} == {"waits"}
