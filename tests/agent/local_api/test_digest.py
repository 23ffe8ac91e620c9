"""Digest verification: RFC 7616 vectors, nonce life, replays, and headers from anywhere."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.local_api import digest
from agent.local_api.digest import NonceBook, Request, Verdict

PASSWORD = "label password"
REQ = Request("POST", "/v1/token")


def test_rfc7616_section_3_9_1_sha256_vector() -> None:
    response = digest.expected_response(
        username="Mufasa",
        realm="http-auth@example.org",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert response == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def test_rfc7616_section_3_9_1_authorization_header_parses() -> None:
    header = (
        'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        'algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    params = digest.parse_authorization(header)
    assert params["username"] == "Mufasa"
    assert params["nc"] == "00000001"
    assert params["algorithm"] == "SHA-256"
    assert params["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_quoted_strings_unescape() -> None:
    params = digest.parse_authorization(r'Digest username="a\"b\\c", realm="x, y"')
    assert params == {"username": 'a"b\\c', "realm": "x, y"}


def authorization(
    book: NonceBook,
    now: float,
    *,
    password: str = PASSWORD,
    user: str = "admin",
    realm: str = digest.REALM,
    uri: str = REQ.target,
    nc: int = 1,
    nonce: str | None = None,
    algorithm: str = "SHA-256",
    method: str = REQ.method,
) -> str:
    nonce = nonce if nonce is not None else book.make(now)
    nc_text = f"{nc:08x}"
    response = digest.expected_response(
        username=user,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=nonce,
        nc=nc_text,
        cnonce="0a4f113b",
    )
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'algorithm={algorithm}, qop=auth, nc={nc_text}, cnonce="0a4f113b", '
        f'response="{response}"'
    )


@pytest.fixture
def book() -> NonceBook:
    return NonceBook(b"k" * 32, ttl_s=300)


def test_the_right_answer_passes_once_per_nonce_count(book: NonceBook) -> None:
    nonce = book.make(1000.0)
    first = authorization(book, 1000.0, nonce=nonce, nc=1)
    assert digest.verify(first, REQ, PASSWORD, book, 1001.0) is Verdict.OK
    assert digest.verify(first, REQ, PASSWORD, book, 1002.0) is Verdict.REPLAY
    second = authorization(book, 1000.0, nonce=nonce, nc=2)
    assert digest.verify(second, REQ, PASSWORD, book, 1003.0) is Verdict.OK
    assert digest.verify(first, REQ, PASSWORD, book, 1004.0) is Verdict.REPLAY


def test_an_expired_nonce_with_the_right_answer_is_stale(book: NonceBook) -> None:
    header = authorization(book, 1000.0)
    assert digest.verify(header, REQ, PASSWORD, book, 1000.0 + 301) is Verdict.STALE
    # ... and with the wrong one, a failure: staleness is never a free guess.
    wrong = authorization(book, 1000.0, password="guess")
    assert digest.verify(wrong, REQ, PASSWORD, book, 1000.0 + 301) is Verdict.WRONG


def test_a_nonce_from_the_future_counts_as_expired(book: NonceBook) -> None:
    header = authorization(book, 5000.0)
    assert digest.verify(header, REQ, PASSWORD, book, 4000.0) is Verdict.STALE


def test_wrong_password_or_user_is_a_failure(book: NonceBook) -> None:
    for header in (
        authorization(book, 0.0, password="wrong"),
        authorization(book, 0.0, user="root"),
    ):
        verdict = digest.verify(header, REQ, PASSWORD, book, 1.0)
        assert verdict is Verdict.WRONG
        assert verdict.is_failure


def test_answers_for_another_request_realm_or_algorithm_are_malformed(book: NonceBook) -> None:
    for header in (
        authorization(book, 0.0, realm="other"),
        authorization(book, 0.0, uri="/v1/reset"),
        authorization(book, 0.0, algorithm="MD5"),
    ):
        assert digest.verify(header, REQ, PASSWORD, book, 1.0) is Verdict.MALFORMED
    # The response for GET does not pass for POST.
    get = authorization(book, 0.0, method="GET")
    assert digest.verify(get, REQ, PASSWORD, book, 1.0) is Verdict.WRONG


def test_nonces_of_another_boot_or_tampered_are_unknown(book: NonceBook) -> None:
    other_boot = NonceBook(b"z" * 32)
    header = authorization(book, 0.0, nonce=other_boot.make(0.0))
    assert digest.verify(header, REQ, PASSWORD, book, 1.0) is Verdict.UNKNOWN_NONCE
    nonce = book.make(0.0)
    tampered = nonce[:-2] + ("AA" if nonce[-2:] != "AA" else "BB")
    header = authorization(book, 0.0, nonce=tampered)
    assert digest.verify(header, REQ, PASSWORD, book, 1.0) is Verdict.UNKNOWN_NONCE


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Basic YWRtaW46cGFzcw==",
        "Digest",
        "Digest username",
        'Digest username="admin"',
        'Digest username="admin", username="admin"',
        'Digest username="admin,',
        "Digest " + "a=b, " * 2000,
        'Digest username="adm\udcff"',
        'Digest username="admín"',
        'Digest username="admin", realm="camagent", nonce="x", uri="/v1/token", '
        'response="zz", qop=auth, nc=1, cnonce="c"',
    ],
)
def test_malformed_headers_are_malformed(book: NonceBook, header: str) -> None:
    assert digest.verify(header, REQ, PASSWORD, book, 0.0) is Verdict.MALFORMED


def test_no_header_is_the_first_leg(book: NonceBook) -> None:
    assert digest.verify(None, REQ, PASSWORD, book, 0.0) is Verdict.MISSING


def test_challenge_carries_what_clients_need() -> None:
    text = digest.challenge("abc", stale=True)
    assert text.startswith("Digest ")
    params = digest.parse_authorization(text)
    assert params["realm"] == "camagent"
    assert params["algorithm"] == "SHA-256"
    assert params["qop"] == "auth"
    assert params["stale"] == "true"


def test_the_replay_memory_is_bounded(book: NonceBook) -> None:
    for i in range(digest.MAX_TRACKED_NONCES + 10):
        assert book.use(f"n{i}", 1)
    assert len(book._counts) == digest.MAX_TRACKED_NONCES


@given(st.text(max_size=300))
def test_any_header_gets_a_verdict(header: str) -> None:
    book = NonceBook(b"k" * 32)
    assert digest.verify(header, REQ, PASSWORD, book, 0.0) in (
        Verdict.MALFORMED,
        Verdict.UNKNOWN_NONCE,
    )


@given(st.text(max_size=200))
def test_parse_raises_only_digest_error(header: str) -> None:
    with contextlib.suppress(digest.DigestError):
        digest.parse_authorization("Digest " + header)
