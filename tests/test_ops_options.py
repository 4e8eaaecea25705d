"""Every field of Limits is a twistd option and a configuration key, generated from the dataclass;
values are checked, and the documentation's table is the generated one."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from twisted.python import usage

from dotwist import service
from dotwist.config import Limits
from dotwist.limitoptions import LimitValueError, limitOptions, limitsFromConfig, markdownTable

ROOT = Path(__file__).resolve().parent.parent


def parse(*argv):
    options = service.Options()
    options.parseOptions(list(argv))
    return options


def test_every_limit_field_is_an_option_with_its_comment_as_help():
    """Each Limits field has an option named after it, whose help is the field's #: comment and
    shows its default; a field added to Limits would get one too."""
    names = {o.field: o for o in limitOptions()}
    assert set(names) == {f.name for f in fields(Limits)}
    rows = {row[0]: row for row in service.Options.optParameters}
    for o in names.values():
        assert o.option in rows
        assert o.help and o.help in rows[o.option][3]
        assert "default" in rows[o.option][3]
    assert names["hibernateAfter"].option == "hibernate-after"
    assert "hibernatable WebSockets" in names["hibernateAfter"].help


def test_options_set_limits_with_units_and_aliases():
    """Seconds and bytes take units; the old --max-request-body still works."""
    limits = parse(
        "--hibernate-after", "500ms", "--evict-after", "2m", "--max-message-size", "1MiB",
        "--max-request-body", "2KB", "--max-pending-calls", "7", "--drain-timeout", "3",
    )["limits"]
    assert limits.hibernateAfter == 0.5 and limits.evictAfter == 120.0
    assert limits.maxMessageSize == 1024 * 1024 and limits.maxRequestBodySize == 2000
    assert limits.maxPendingCalls == 7 and limits.drainTimeout == 3.0
    assert parse()["limits"] == Limits()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--hibernate-after", "soon"], "--hibernate-after must be a positive number of seconds"),
        (["--hibernate-after", "-1"], "--hibernate-after must be a positive number of seconds"),
        (["--evict-after", "0"], "--evict-after must be a positive number of seconds"),
        (["--max-pending-calls", "2.5"], "--max-pending-calls must be a positive whole number"),
        (["--max-message-size", "3 parsecs"], "--max-message-size must be a positive whole number of bytes"),
        (["--shutdown-timeout", "nan"], "--shutdown-timeout must be a positive number"),
    ],
)
def test_bad_limit_values_are_refused_with_the_option_named(argv, message):
    """A limit that is not a positive value of its kind is refused, naming the option."""
    with pytest.raises(usage.UsageError, match=message.replace("(", r"\(")):
        parse(*argv)


def test_configuration_keys():
    """Configuration keys are the field names (or the option names); unknown keys are refused."""
    limits = limitsFromConfig({"hibernateAfter": 3, "evict-after": "90s", "maxPendingBytes": "1MiB"})
    assert (limits.hibernateAfter, limits.evictAfter, limits.maxPendingBytes) == (3.0, 90.0, 1024 * 1024)
    with pytest.raises(LimitValueError, match="unknown limit 'hibernate'"):
        limitsFromConfig({"hibernate": 3})
    with pytest.raises(LimitValueError, match="must be a positive whole number"):
        limitsFromConfig({"maxPendingCalls": True})


def test_the_documentation_lists_every_limit():
    """docs/operating.md holds the generated table of limits, as generated now."""
    assert markdownTable() in (ROOT / "docs" / "operating.md").read_text()


def test_admin_needs_a_token_and_defaults_to_loopback(tmp_path, monkeypatch):
    """--admin without a token is refused; a bare port listens on 127.0.0.1; the token file is
    read."""
    monkeypatch.delenv("DOTWIST_ADMIN_TOKEN", raising=False)
    with pytest.raises(usage.UsageError, match="--admin needs a token"):
        parse("--admin", "9090")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    options = parse("--admin", "9090", "--admin-token-file", str(token), "--metrics", "tcp:9091")
    assert options["admin"] == "tcp:9090:interface=127.0.0.1"
    assert options["metrics"] == "tcp:9091:interface=127.0.0.1"
    assert options["adminToken"] == "s3cret"
    assert parse("--admin", "tcp:9090:interface=0.0.0.0", "--admin-token", "x")["admin"] == "tcp:9090:interface=0.0.0.0"
    with pytest.raises(usage.UsageError, match="--admin 'nonsense:1' is not a valid endpoint"):
        parse("--admin", "nonsense:1", "--admin-token", "x")
    with pytest.raises(usage.UsageError, match="--log-format must be text or json"):
        parse("--log-format", "xml")
