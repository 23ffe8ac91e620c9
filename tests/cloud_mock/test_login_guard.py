"""The pure bookkeeping behind login: captcha book, failure log, resolve grants."""

from __future__ import annotations

import pytest

from cloud_mock.captcha import (
    ALPHABET,
    CAPTCHA_TTL_S,
    CaptchaBook,
    CaptchaCheck,
    CaptchaFull,
    normalize_answer,
    render_png,
)
from cloud_mock.login_guard import FailureLog, RateLimit, RenderBudget, ResolveGrants

T0 = 1_000_000.0


def test_captcha_answers_use_the_unambiguous_alphabet() -> None:
    book = CaptchaBook()
    answers = [book.issue(f"client{i}", T0).answer for i in range(200)]
    assert all(len(a) == 5 and set(a) <= set(ALPHABET) for a in answers)
    assert not set(ALPHABET) & set("0O1I2Z5S8B")
    assert len(set(answers)) > 190  # random, not a fixed sequence


def test_captcha_check_consumes_right_or_wrong() -> None:
    book = CaptchaBook()
    captcha = book.issue("c", T0)
    assert book.check(captcha.id, "nope", T0, "ann") is CaptchaCheck.WRONG
    assert book.check(captcha.id, captcha.answer, T0, "ann") is CaptchaCheck.UNKNOWN
    captcha = book.issue("c", T0)
    assert book.check(captcha.id, captcha.answer.lower(), T0 + 1, "ann") is CaptchaCheck.OK
    assert book.check(captcha.id, captcha.answer, T0 + 1, "ann") is CaptchaCheck.UNKNOWN
    assert len(book) == 0


@pytest.mark.parametrize(
    ("age", "expected"),
    [(CAPTCHA_TTL_S - 0.001, CaptchaCheck.OK), (CAPTCHA_TTL_S, CaptchaCheck.EXPIRED)],
)
def test_captcha_expires_after_60_s(age: float, expected: CaptchaCheck) -> None:
    book = CaptchaBook()
    captcha = book.issue("c", T0)
    assert book.check(captcha.id, captcha.answer, T0 + age, "ann") is expected


def test_a_full_address_is_refused_a_draw_and_nobodys_captcha_dies_for_room() -> None:
    """Issue 25: draws behind one address (an office) never kill a neighbour's captcha;
    past the bound the draw is refused until the oldest expires, and a refresh kills
    exactly the captcha it replaces."""
    book = CaptchaBook(max_per_client=2)
    first = book.issue("a", T0)
    other = book.issue("b", T0)
    second = book.issue("a", T0 + 5)
    with pytest.raises(CaptchaFull) as full:
        book.issue("a", T0 + 10)  # a's third
    assert full.value.retry_after == pytest.approx(CAPTCHA_TTL_S - 10)
    # Both captchas of address a live on: two people there are both served.
    assert book.peek(first.id) == first
    assert book.peek(second.id) == second
    # Per login: draws for another login, or for none, are a bucket of their own.
    for_ann = book.issue("a", T0 + 10, login="ann")
    assert book.peek(for_ann.id) == for_ann
    # A refresh kills the one it replaces, and makes its own room.
    refreshed = book.issue("a", T0 + 10, replaces=second.id)
    assert book.peek(second.id) is None
    assert book.peek(first.id) == first
    assert book.peek(refreshed.id) == refreshed
    assert book.peek(other.id) == other
    # Once the oldest has expired, there is room again.
    assert book.issue("a", T0 + CAPTCHA_TTL_S).client == "a"
    assert book.peek(first.id) is None


def test_the_book_as_a_last_bound_drops_the_oldest() -> None:
    book = CaptchaBook(max_live=4)
    oldest = book.issue("flood0", T0)
    for i in range(1, 10):
        book.issue(f"flood{i}", T0)
    assert len(book) == 4
    assert book.peek(oldest.id) is None


def test_a_captcha_for_one_login_solves_only_that_login() -> None:
    book = CaptchaBook()
    for_ann = book.issue("c", T0, login="ann")
    assert book.check(for_ann.id, for_ann.answer, T0, "bob") is CaptchaCheck.UNKNOWN
    for_ann = book.issue("c", T0, login="ann")
    refreshed = book.issue("c", T0, replaces=for_ann.id)
    assert refreshed.login == "ann"
    assert book.check(refreshed.id, refreshed.answer, T0, "ann") is CaptchaCheck.OK
    anyone = book.issue("c", T0)
    assert book.check(anyone.id, anyone.answer, T0, "bob") is CaptchaCheck.OK


def test_render_budget_per_client_and_overall() -> None:
    budget = RenderBudget(per_client=RateLimit(3, 60), overall=RateLimit(5, 60))
    assert [budget.take("a", T0) for _ in range(3)] == [None] * 3
    assert budget.take("a", T0 + 1) == 59
    assert [budget.take("b", T0 + 1) for _ in range(2)] == [None] * 2
    assert budget.take("c", T0 + 2) == 58  # everybody together: 5 a minute
    assert budget.take("c", T0 + 60) is None


def test_a_login_that_needs_a_captcha_gets_one_when_everybodys_budget_is_spent() -> None:
    """Issue 25 (H2): addresses that spend everybody's budget leave the owner, at a fresh
    address, a captcha for the login that needs one; the reserve is per (login, address)
    and bounded for everybody."""
    budget = RenderBudget(
        per_client=RateLimit(20, 60),
        overall=RateLimit(5, 60),
        reserve_per_client=RateLimit(2, 60),
        reserve=RateLimit(4, 60),
    )
    assert [budget.take(f"crowd{i}", T0) for i in range(5)] == [None] * 5
    assert budget.take("owner", T0 + 1) == 59  # a draw for no login: the budget is spent
    assert budget.take("owner", T0 + 1, needed_by="admin") is None  # from the reserve
    assert budget.take("owner", T0 + 1, needed_by="admin") is None  # a refresh
    assert budget.take("owner", T0 + 1, needed_by="admin") == 59  # its share of the reserve
    # Others draw the rest of the reserve for that login; then it too waits.
    assert budget.take("crowd9", T0 + 2, needed_by="admin") is None
    assert budget.take("crowd8", T0 + 2, needed_by="admin") is None
    assert budget.take("crowd7", T0 + 2, needed_by="admin") == 58
    assert budget.take("owner", T0 + 61, needed_by="admin") is None


def test_normalize_answer() -> None:
    assert normalize_answer(" ak 4\t7x ") == "AK47X"


def test_render_png_is_a_png() -> None:
    assert render_png("AK47X").startswith(b"\x89PNG\r\n\x1a\n")


def test_failure_log_blocks_a_login_only_at_the_address_that_failed() -> None:
    log = FailureLog(
        per_login=RateLimit(3, 100),
        per_client=RateLimit(100, 100),
        captcha_after=RateLimit(5, 100),
    )
    for i in range(3):
        assert log.retry_after("eve", "ip", T0 + i) is None
        log.failed("eve", "ip", T0 + i)
    assert log.retry_after("eve", "ip", T0 + 10) == 90
    assert log.retry_after("eve", "other-ip", T0 + 10) is None  # the owner elsewhere
    assert log.retry_after("ann", "ip", T0 + 10) is None
    assert log.retry_after("eve", "ip", T0 + 100) is None
    assert not log.needs_captcha("eve", T0 + 10)
    assert log.failures("eve") == 3
    log.succeeded("eve", "ip")
    assert log.failures("eve") == 0
    assert log.retry_after("eve", "ip", T0 + 10) is None


def test_failure_log_asks_a_captcha_for_a_login_failing_from_many_addresses() -> None:
    log = FailureLog(
        per_login=RateLimit(3, 100),
        per_client=RateLimit(100, 100),
        captcha_after=RateLimit(5, 100),
    )
    for i in range(5):
        log.failed("ann", f"ip{i}", T0)
    assert log.needs_captcha("ann", T0 + 1)
    assert not log.needs_captcha("bob", T0 + 1)
    assert log.retry_after("ann", "owner-ip", T0 + 1) is None  # a captcha, not a lock
    assert not log.needs_captcha("ann", T0 + 100)


def test_failure_log_blocks_per_client_across_logins() -> None:
    log = FailureLog(per_login=RateLimit(100, 60), per_client=RateLimit(4, 60))
    for i in range(4):
        log.failed(f"user{i}", "ip", T0)
    assert log.retry_after("fresh", "ip", T0 + 0.5) == 60  # rounded up, whole seconds
    assert log.retry_after("fresh", "elsewhere", T0) is None


def test_failure_log_stays_bounded() -> None:
    log = FailureLog(per_login=RateLimit(2, 60), per_client=RateLimit(2, 60), max_keys=50)
    for i in range(1000):
        log.failed(f"user{i}", f"ip{i}", T0 + i)
    assert len(log._streaks) <= 50
    assert len(log._pair._times) <= 50
    assert len(log._login._times) <= 50
    assert len(log._client._times) <= 50


def test_resolve_grant_is_single_use_and_gives_one_captcha_pass() -> None:
    grants = ResolveGrants(ttl_s=120)
    token = grants.issue("ann", "ip", T0)
    grant = grants.find(token)
    assert grant is not None
    assert (grant.login, grant.expires_at) == ("ann", T0 + 120)
    assert grants.find("rs_made-up") is None
    assert not grants.take_captcha_pass("ann", "ip", T0)
    grants.use(token)
    assert grants.find(token) is None
    assert not grants.take_captcha_pass("ann", "other-ip", T0)
    assert grants.take_captcha_pass("ann", "ip", T0 + 1)
    assert not grants.take_captcha_pass("ann", "ip", T0 + 1)


def test_captcha_pass_ends_with_the_token_lifetime() -> None:
    grants = ResolveGrants(ttl_s=120)
    token = grants.issue("ann", "ip", T0)
    grants.use(token)
    assert not grants.take_captcha_pass("ann", "ip", T0 + 120)
