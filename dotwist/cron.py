"""Cron Triggers: Cloudflare's cron expressions, parsed, checked, and evaluated.

Cloudflare accepts five fields (minute, hour, day of month, month, day of week), all in UTC, with
"most Quartz scheduler-like" extensions. Its parser (cloudflare/saffron) fixes the details this
module follows:

- day of week is ``1``-``7`` with ``1`` = Sunday (Quartz numbering, not Vixie cron's ``0`` = Sunday),
  or ``SUN``-``SAT``; months are ``1``-``12`` or ``JAN``-``DEC`` (names in any case);
- ``*``, lists ``a,b``, ranges ``a-b`` (a range may wrap: ``FRI-MON``), steps ``a/s``, ``a-b/s``,
  ``*/s``; a step is at least 1 and at most the field's span;
- day of month also takes ``L`` (last day), ``L-n`` (n days before it), ``LW`` (last weekday),
  ``L-nW``, and ``nW`` (the weekday nearest day n, within the month);
- day of week also takes ``nL`` / ``FRIL`` (the last such weekday of the month), ``n#k`` (the k-th
  such weekday, k from 1 to 5), and ``L`` alone (Saturday);
- when both day fields are restricted, a day matches if either matches (as Vixie cron and saffron
  do); a field is unrestricted only when it is exactly ``*``.

No library fits: croniter and cronsim number weekdays from Sunday = 0, so ``0 17 * * 1`` (5 PM on
Sunday at Cloudflare) would run on Mondays. Pure computation, no I/O, no clock: the caller passes
the time to :meth:`CronSchedule.nextAfter`.
"""

from __future__ import annotations

import calendar
import datetime
from dataclasses import dataclass
from typing import Optional

__all__ = ["CronError", "CronSchedule", "parseCron"]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

#: How far ahead :meth:`CronSchedule.nextAfter` looks. Every valid combination of a month, a day
#: and a weekday recurs within 28 years (the Gregorian weekday cycle within a century); 400 covers
#: century leap-year rules too.
_SEARCH_YEARS = 400


class CronError(ValueError):
    """A cron expression Cloudflare would not accept; the message names the field."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()

    def value(self, text: str, expr: str) -> int:
        upper = text.upper()
        if self.names and upper in self.names:
            return self.names.index(upper) + self.low
        if not text.isdigit() or not text.isascii():
            raise CronError(f"cron {expr!r}: {self.name}: {text!r} is not a value")
        number = int(text)
        if not self.low <= number <= self.high:
            raise CronError(
                f"cron {expr!r}: {self.name}: {number} is out of range {self.low}-{self.high}"
            )
        return number

    def step(self, text: str, expr: str) -> int:
        if not text.isdigit() or not text.isascii():
            raise CronError(f"cron {expr!r}: {self.name}: step {text!r} is not a number")
        step = int(text)
        if not 1 <= step <= self.high - self.low:
            raise CronError(
                f"cron {expr!r}: {self.name}: step {step} is out of range 1-{self.high - self.low}"
            )
        return step

    def span(self, start: int, end: int, step: int) -> list[int]:
        if start <= end:
            return list(range(start, end + 1, step))
        wrapped = list(range(start, self.high + 1)) + list(range(self.low, end + 1))
        return wrapped[::step]

    def term(self, text: str, expr: str) -> set[int]:
        """One list element: ``v``, ``a-b``, ``v/s``, ``a-b/s``, ``*/s``."""
        base, slash, stepText = text.partition("/")
        step = self.step(stepText, expr) if slash else 1
        if base == "*":
            if not slash:
                raise CronError(f"cron {expr!r}: {self.name}: '*' cannot be part of a list")
            return set(self.span(self.low, self.high, step))
        first, dash, last = base.partition("-")
        start = self.value(first, expr)
        if dash:
            return set(self.span(start, self.value(last, expr), step))
        if slash:
            return set(self.span(start, self.high, step))
        return {start}

    def parse(self, text: str, expr: str) -> Optional[frozenset[int]]:
        """The values the field allows, or None for exactly ``*``."""
        if text == "*":
            return None
        values: set[int] = set()
        for term in text.split(","):
            if not term:
                raise CronError(f"cron {expr!r}: {self.name}: empty list element")
            values |= self.term(term, expr)
        return frozenset(values)


_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day of month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_DOW = _Field("day of week", 1, 7, _DAYS)


@dataclass(frozen=True)
class _DaySpec:
    """A day field: ``kind`` is "star", "set", "last", "lastWeekday", "nearestWeekday", "nth"."""

    kind: str
    values: frozenset[int] = frozenset()
    offset: int = 0  # last: days before the last day; nth: which occurrence
    weekday: bool = False  # last (day of month): the nearest weekday to it


def _parseDom(text: str, expr: str) -> _DaySpec:
    if text.startswith("L"):
        rest = text[1:]
        if rest == "":
            return _DaySpec("last")
        if rest == "W":
            return _DaySpec("last", weekday=True)
        if rest.startswith("-"):
            digits, weekday = (rest[1:-1], True) if rest.endswith("W") else (rest[1:], False)
            if not digits.isdigit() or not digits.isascii() or not 1 <= int(digits) <= 30:
                raise CronError(f"cron {expr!r}: day of month: {text!r}: L-n needs n from 1 to 30")
            return _DaySpec("last", offset=int(digits), weekday=weekday)
        raise CronError(f"cron {expr!r}: day of month: {text!r} is not a value")
    if text.endswith("W"):
        return _DaySpec("nearestWeekday", frozenset({_DOM.value(text[:-1], expr)}))
    values = _DOM.parse(text, expr)
    return _DaySpec("star") if values is None else _DaySpec("set", values)


def _parseDow(text: str, expr: str) -> _DaySpec:
    if text == "L":
        return _DaySpec("set", frozenset({6}))
    if text.endswith("L"):
        return _DaySpec("last", frozenset({_DOW.value(text[:-1], expr) - 1}))
    if "#" in text:
        day, _, nth = text.partition("#")
        if not nth.isdigit() or not nth.isascii() or not 1 <= int(nth) <= 5:
            raise CronError(f"cron {expr!r}: day of week: {text!r}: #k needs k from 1 to 5")
        return _DaySpec("nth", frozenset({_DOW.value(day, expr) - 1}), offset=int(nth))
    values = _DOW.parse(text, expr)
    if values is None:
        return _DaySpec("star")
    return _DaySpec("set", frozenset(v - 1 for v in values))


def _sundayBased(day: datetime.date) -> int:
    return (day.weekday() + 1) % 7


def _nearestWeekday(day: datetime.date) -> int:
    """The day of month of the weekday nearest ``day``, not leaving its month (Quartz ``W``)."""
    last = calendar.monthrange(day.year, day.month)[1]
    weekday = day.weekday()  # Monday = 0
    if weekday == 5:  # Saturday: the Friday before, or the Monday after on the 1st
        return day.day - 1 if day.day > 1 else day.day + 2
    if weekday == 6:  # Sunday: the Monday after, or the Friday before on the last day
        return day.day + 1 if day.day < last else day.day - 2
    return day.day


def _domMatches(spec: _DaySpec, day: datetime.date) -> bool:
    if spec.kind == "set":
        return day.day in spec.values
    last = calendar.monthrange(day.year, day.month)[1]
    if spec.kind == "last":
        target = last - spec.offset
        if target < 1:
            return False
        if spec.weekday:
            target = _nearestWeekday(day.replace(day=target))
        return day.day == target
    # nearestWeekday
    (wanted,) = spec.values
    if wanted > last:
        return False
    return day.day == _nearestWeekday(day.replace(day=wanted))


def _dowMatches(spec: _DaySpec, day: datetime.date) -> bool:
    if _sundayBased(day) not in spec.values:
        return False
    if spec.kind == "set":
        return True
    if spec.kind == "last":
        return day.day + 7 > calendar.monthrange(day.year, day.month)[1]
    return (day.day - 1) // 7 + 1 == spec.offset  # nth


@dataclass(frozen=True)
class CronSchedule:
    """One parsed cron expression. ``expression`` is the text as written in the config."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    dayOfMonth: _DaySpec
    dayOfWeek: _DaySpec

    def __repr__(self) -> str:
        return f"<CronSchedule {self.expression!r}>"

    def matchesDay(self, day: datetime.date) -> bool:
        if day.month not in self.months:
            return False
        domStar = self.dayOfMonth.kind == "star"
        dowStar = self.dayOfWeek.kind == "star"
        if domStar and dowStar:
            return True
        if dowStar:
            return _domMatches(self.dayOfMonth, day)
        if domStar:
            return _dowMatches(self.dayOfWeek, day)
        return _domMatches(self.dayOfMonth, day) or _dowMatches(self.dayOfWeek, day)

    def matches(self, when: datetime.datetime) -> bool:
        """Whether the minute of ``when`` (UTC) is one this schedule fires at."""
        when = _utc(when)
        return (
            when.minute in self.minutes and when.hour in self.hours and self.matchesDay(when.date())
        )

    def nextAfter(self, when: datetime.datetime) -> Optional[datetime.datetime]:
        """The first minute strictly after ``when`` that this schedule fires at (aware, UTC).

        None if the schedule never fires (only possible for a schedule built without
        :func:`parseCron`, which refuses those).
        """
        when = _utc(when).replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
        hours = sorted(self.hours)
        minutes = sorted(self.minutes)
        day = when.date()
        end = day.replace(year=min(day.year + _SEARCH_YEARS, datetime.MAXYEAR), month=1, day=1)
        first = True
        while day < end:
            if self.matchesDay(day):
                for hour in hours:
                    if first and hour < when.hour:
                        continue
                    for minute in minutes:
                        if first and hour == when.hour and minute < when.minute:
                            continue
                        return datetime.datetime(
                            day.year, day.month, day.day, hour, minute, tzinfo=datetime.timezone.utc
                        )
            first = False
            day += datetime.timedelta(days=1)
        return None


def _utc(when: datetime.datetime) -> datetime.datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc)


def parseCron(expression: str) -> CronSchedule:
    """Parse one of Cloudflare's cron expressions, refusing what Cloudflare refuses.

    Also refused: an expression that names no real date (``0 0 31 2 *``), which would never fire.
    """
    if not isinstance(expression, str):
        raise CronError(f"cron expression must be a string, not {type(expression).__name__}")
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(
            f"cron {expression!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}"
        )
    minute, hour, dom, month, dow = fields
    schedule = CronSchedule(
        expression,
        _MINUTE.parse(minute, expression) or frozenset(range(60)),
        _HOUR.parse(hour, expression) or frozenset(range(24)),
        _MONTH.parse(month, expression) or frozenset(range(1, 13)),
        _parseDom(dom, expression),
        _parseDow(dow, expression),
    )
    if schedule.nextAfter(datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)) is None:
        raise CronError(f"cron {expression!r}: names no date that exists, so it would never fire")
    return schedule
