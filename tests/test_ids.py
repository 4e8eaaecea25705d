"""Durable Object IDs: minting, parsing, and refusal of foreign or mistyped IDs."""

import pytest

from dotwist.ids import IdMinter


def test_named_ids_are_stable_and_carry_their_name():
    """The same name gives the same 64-hex-digit ID, which remembers the name."""
    minter = IdMinter("Counter")
    a, b = minter.fromName("foo"), IdMinter("Counter").fromName("foo")
    assert a.toString() == b.toString()
    assert len(a.toString()) == 64 and int(a.toString(), 16) >= 0
    assert a.toString() == a.toString().lower()
    assert a.name == "foo" and a.equals(b) and a == b


def test_different_names_and_unique_ids_differ():
    """Different names, and each newUniqueId, give different IDs with no name."""
    minter = IdMinter("Counter")
    assert minter.fromName("a") != minter.fromName("b")
    u1, u2 = minter.unique(), minter.unique()
    assert u1 != u2 and u1.name is None


def test_idFromString_round_trips():
    """An ID's string parses back to an equal ID of the same namespace."""
    minter = IdMinter("Counter")
    for original in (minter.fromName("x"), minter.unique()):
        parsed = minter.fromString(original.toString())
        assert parsed.equals(original) and parsed.toString() == original.toString()


@pytest.mark.parametrize("text", ["", "abc", "z" * 64, "0" * 63, "0" * 65, 42])
def test_idFromString_refuses_malformed(text):
    """Anything but 64 hex digits is refused with Cloudflare's message."""
    with pytest.raises(TypeError, match="Invalid Durable Object ID: must be 64 hex digits"):
        IdMinter("Counter").fromString(text)


def test_idFromString_refuses_other_namespace_and_typos():
    """An ID minted by another namespace, or with one digit changed, fails its MAC check."""
    good = IdMinter("Counter").fromName("foo").toString()
    with pytest.raises(TypeError, match="not valid for this namespace"):
        IdMinter("Other").fromString(good)
    typo = good[:10] + ("0" if good[10] != "0" else "1") + good[11:]
    with pytest.raises(TypeError, match="not valid for this namespace"):
        IdMinter("Counter").fromString(typo)


def test_secret_keys_the_namespace():
    """A deployment with another secret mints other IDs and refuses ours."""
    ours = IdMinter("Counter", b"one").fromName("foo")
    theirs = IdMinter("Counter", b"two")
    assert theirs.fromName("foo") != ours
    with pytest.raises(TypeError):
        theirs.fromString(ours.toString())
