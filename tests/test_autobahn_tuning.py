"""The Autobahn tuning keeps behaviour: the masker unmasks exactly, in any chunking; deferred log
formatting still formats when a line is emitted."""

import os
import random

import pytest

from dotwist import _autobahn


def reference(mask, data, start=0):
    return bytes(b ^ mask[(start + i) % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 31, 32, 125, 126, 1000, 4095])
def test_int_masker_matches_the_definition_in_any_chunking(size):
    """Unmasking in random chunks gives the same bytes as the RFC 6455 definition."""
    rng = random.Random(size)
    mask, data = os.urandom(4), os.urandom(size)
    masker = _autobahn.IntMasker(mask)
    out, pos = b"", 0
    while pos < size:
        step = rng.randint(1, 9)
        out += masker.process(data[pos:pos + step])
        pos += step
    assert out == reference(mask, data) and masker.pointer() == size
    masker.reset()
    assert masker.pointer() == 0 and masker.process(data) == reference(mask, data)


def test_installed_factory_uses_autobahn_for_large_frames():
    """Small frames get the IntMasker; large ones keep Autobahn's own masker."""
    from autobahn.websocket import protocol

    import dotwist.server  # noqa: F401  (installs the tuning)

    assert isinstance(protocol.create_xor_masker(b"abcd", 10), _autobahn.IntMasker)
    assert not isinstance(protocol.create_xor_masker(b"abcd", 1 << 20), _autobahn.IntMasker)


def test_deferred_formatting_formats_when_emitted():
    """The placeholder formats to exactly what the original helper returns."""
    from pprint import pformat

    later = _autobahn._deferFormatting(pformat)([("a", 1)])
    assert "{x}".format(x=later) == pformat([("a", 1)]) and str(later) == pformat([("a", 1)])
