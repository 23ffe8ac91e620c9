from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.account import profiles
from agent.account.errors import NoProfileError, ProfileError
from agent.account.profiles import Profile, Profiles

A = Profile("a", "https://a.example")
B = Profile("b", "https://b.example", login="bob")
C = Profile("c", "https://c.example")


def test_the_first_profile_becomes_the_default_and_later_ones_do_not() -> None:
    one = Profiles().add(A)
    assert one.default == "a"
    two = one.add(B)
    assert two.default == "a"
    assert two.names() == ["a", "b"]


def test_a_new_profile_can_be_made_the_default_when_added() -> None:
    assert Profiles().add(A).add(B, make_default=True).default == "b"


def test_the_user_chooses_the_default() -> None:
    chosen = Profiles().add(A).add(B).with_default("b")
    assert chosen.default == "b"
    assert chosen.get(None) == B


def test_choosing_an_unknown_default_names_the_existing_profiles() -> None:
    with pytest.raises(ProfileError, match=r"no server profile named 'z'.*'a', 'b'"):
        Profiles().add(A).add(B).with_default("z")


def test_the_default_cannot_be_removed_while_others_exist() -> None:
    three = Profiles().add(A).add(B).add(C)
    with pytest.raises(ProfileError, match=r"'a' is the default.*make another one the default"):
        three.remove("a")
    assert three.remove("b").names() == ["a", "c"]
    assert three.with_default("c").remove("a").default == "c"


def test_the_last_profile_can_be_removed_leaving_none() -> None:
    # With one profile there is no other to make the default: refusing would leave the
    # user stuck with it, so removing it is allowed.
    empty = Profiles().add(A).remove("a")
    assert empty == Profiles()
    with pytest.raises(NoProfileError, match="camagent cloud servers add"):
        empty.get(None)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ProfileError, match="exists already"):
        Profiles().add(A).add(Profile("a", "https://other.example"))


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("cloud.example.com", "https://cloud.example.com"),
        ("cloud.example.com:8443", "https://cloud.example.com:8443"),
        ("localhost:8443/", "https://localhost:8443"),
        ("HTTPS://Cloud.Example.com/vms/", "https://cloud.example.com/vms"),
        ("https://[::1]:9443", "https://[::1]:9443"),
        ("  127.0.0.1  ", "https://127.0.0.1"),
    ],
)
def test_https_is_added_when_missing(typed: str, stored: str) -> None:
    assert profiles.normalize_url(typed) == stored


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("http://cloud.example.com", "only https:// .* not http://"),
        ("ftp://cloud.example.com", "not ftp://"),
        ("wss://cloud.example.com", "not wss://"),
        ("https://", "no host name"),
        ("https://cloud.example.com:99999", "not a usable server URL"),
        ("https://user:pw@cloud.example.com", "without user, query or fragment"),
        ("https://cloud.example.com/?a=1", "without user, query or fragment"),
    ],
)
def test_other_schemes_and_odd_urls_are_refused_clearly(typed: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        profiles.normalize_url(typed)


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x\x1b[31m", "n" * 65])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ProfileError):
        profiles.check_name(name)


def test_a_missing_ca_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"cannot use .*missing\.pem"):
        profiles.check_ca_file(str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ProfileError, match=r"junk\.pem"):
        profiles.check_ca_file(str(junk))


def test_saved_file_is_private_and_reads_back(config_home: Path) -> None:
    saved = Profiles().add(A).add(B).with_default("b")
    path = profiles.save(saved)
    assert path == config_home / "camagent" / "servers.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert profiles.load() == saved
    assert not list(path.parent.glob(".*tmp"))  # written atomically: no temp file left


def test_no_file_means_no_profiles() -> None:
    assert profiles.load() == Profiles()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("default = \n", "not a valid server profiles file"),
        ('default = "x"\n[[servers]]\nname = "a"\nurl = "https://a"\n', "not one of the servers"),
        ('[[servers]]\nname = "a"\n', "'name' and 'url' are required"),
        ('[[servers]]\nname = "a"\nurl = "http://a"\n', "only https://"),
        ('[[servers]]\nname = "a"\nurl = "https://a"\nport = 1\n', "unknown key"),
        ('[[servers]]\nname = 3\nurl = "https://a"\n', "'name' must be a string"),
        ('servers = "a"\n', "array of tables"),
        ('colour = "blue"\n', "unknown key"),
        ('default = "a\\u001b"\n[[servers]]\nname = "a\\u001b"\nurl = "https://a"\n', "control"),
    ],
)
def test_a_bad_file_is_an_error_naming_the_file(text: str, problem: str) -> None:
    path = profiles.profiles_path()
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ProfileError) as caught:
        profiles.load()
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)
    assert path.read_text() == text  # nothing lost


def test_a_file_that_is_not_utf8_is_an_error_naming_the_file() -> None:
    path = profiles.profiles_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b'default = "\xff"\n')
    with pytest.raises(ProfileError, match=str(path)):
        profiles.load()


ODD_NAMES = ['a "quoted" name', "back\\slash", "ünïcödé ☁", "'single'", "[x]", "#", "a = b"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_names_and_values_round_trip(name: str) -> None:
    odd = name + "\t\n\x7f"  # control characters are fine in values
    saved = Profiles().add(Profile(name, "https://a.example/p", login=odd, ca_file=odd))
    assert profiles.parse(profiles.render(saved)) == saved


_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


_names = st.text(st.characters(blacklist_categories=["C"]), min_size=1, max_size=64).filter(
    str.strip
)


@given(name=_names, login=_text, ca_file=_text)
def test_any_text_round_trips_through_the_writer(name: str, login: str, ca_file: str) -> None:
    saved = Profiles().add(Profile(name, "https://a.example", login=login, ca_file=ca_file))
    text = profiles.render(saved)
    assert tomllib.loads(text)["servers"][0]["name"] == name
    assert profiles.parse(text) == saved


def test_list_json_shape() -> None:
    expected = {"name": "a", "url": "https://a.example", "login": "", "default": True}
    assert A.to_json(True) == expected
