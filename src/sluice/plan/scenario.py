"""A simulation scenario: what arrives, how fast workers go, and the policy that scales them.

``load_scenario`` reads a TOML file into frozen dataclasses; every error names the file, the
table and the key, and an unknown key is an error (a misspelt ``scale_in_coldown`` silently
falling back to its default would make the chart lie). The arithmetic the simulation needs
from the scenario (cumulative arrivals, drawing a worker's rate) lives on these classes, so
``simulate`` stays a loop over time.

Durations and rates are numbers (seconds, messages/s) or strings in ``sluice plan``'s units
(``sluice.plan.units``): ``"14d"``, ``"36h"``, ``"90s"``; ``"600000/day"``, ``"7/s"``.
"""

from __future__ import annotations

import enum
import math
import random
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from sluice.errors import ConfigError
from sluice.plan.units import parse_duration, parse_rate
from sluice.scaling import AutoscalePolicy

DAY = 86_400.0
# Cumulative arrivals are floored; this absorbs float error at exact integers (600k/day
# over one day must give 600,000, not 599,999) and is far below one message.
_FLOOR_SLACK = 1e-6


class ScenarioError(ConfigError):
    """The scenario file is unreadable or a key in it is wrong; the message names the key."""


class Distribution(enum.Enum):
    FIXED = "fixed"  # every worker runs at ``mean``
    NORMAL = "normal"  # normal(mean, sd) truncated at zero by redrawing
    LOGNORMAL = "lognormal"  # lognormal whose own mean and sd are ``mean`` and ``sd``


@dataclass(frozen=True)
class WorkerRates:
    """Each new worker's sustained rate (messages/s), drawn once when it starts."""

    distribution: Distribution = Distribution.FIXED
    mean: float = 1.0
    sd: float = 0.0

    def draw(self, rng: random.Random) -> float:
        if self.distribution is Distribution.FIXED or self.sd == 0:
            return self.mean
        if self.distribution is Distribution.LOGNORMAL:
            sigma2 = math.log1p((self.sd / self.mean) ** 2)
            return rng.lognormvariate(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2))
        # Redrawing (not clipping) keeps the shape; with mean > 0 half the draws at worst fail.
        while True:
            rate = rng.gauss(self.mean, self.sd)
            if rate > 0:
                return rate


@dataclass(frozen=True)
class Burst:
    """``messages`` extra messages at ``at`` seconds, at once or spread evenly over ``over``."""

    at: float
    messages: int
    over: float = 0.0

    def cumulative(self, t: float) -> int:
        if t <= self.at:
            return 0
        if self.over <= 0 or t >= self.at + self.over:
            return self.messages
        return math.floor(self.messages * (t - self.at) / self.over)


@dataclass(frozen=True)
class ArrivalProfile:
    """A mean rate, an optional daily cycle around it, and bursts on top.

    The daily cycle is a sinusoid peaking at ``peak_hour`` (hours after the simulation's
    midnight, time 0) whose peak is ``peak_to_trough`` times its trough; it integrates to
    zero over a day, so the daily total stays ``per_second * 86,400``.
    """

    per_second: float
    peak_to_trough: float = 1.0
    peak_hour: float = 12.0
    bursts: tuple[Burst, ...] = ()

    @property
    def amplitude(self) -> float:
        """a in rate(t) = mean * (1 + a cos(...)): peak/trough = (1 + a) / (1 - a)."""
        return (self.peak_to_trough - 1) / (self.peak_to_trough + 1)

    def rate(self, t: float) -> float:
        """The baseline rate (messages/s) at ``t``, bursts excluded."""
        phase = 2 * math.pi * (t - self.peak_hour * 3_600) / DAY
        return self.per_second * (1 + self.amplitude * math.cos(phase))

    def cumulative(self, t: float) -> int:
        """Whole messages arrived in (0, t]: the integral of ``rate``, floored, plus bursts."""
        base = self.per_second * t
        if self.amplitude:
            omega = 2 * math.pi / DAY
            shift = self.peak_hour * 3_600
            wave = math.sin(omega * (t - shift)) - math.sin(-omega * shift)
            base += self.per_second * self.amplitude * wave / omega
        whole = math.floor(base + _FLOOR_SLACK)
        return whole + sum(b.cumulative(t) for b in self.bursts) if self.bursts else whole


@dataclass(frozen=True)
class Fleet:
    """One side of a comparison: the workers, how they start, and the policy scaling them."""

    label: str
    policy: AutoscalePolicy
    rates: WorkerRates
    startup_delay: float = 60.0  # a new worker processes nothing for this long
    decision_interval: float = 30.0  # the supervisor's SLUICE_QUEUE_ATTRIBUTES_INTERVAL
    initial_workers: int = 0  # already running (and past start-up) at time 0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration: float
    step: float
    initial_backlog: int
    initial_backlog_age: float  # how old the initial backlog already is at time 0
    arrivals: ArrivalProfile
    seed: int
    fleet: Fleet
    compare: Fleet | None = None

    @property
    def fleets(self) -> tuple[Fleet, ...]:
        return (self.fleet,) if self.compare is None else (self.fleet, self.compare)


def _quantity(raw: object, where: str, parse: Callable[[str | float], float], hint: str) -> float:
    """A number or a string in ``sluice plan``'s units, checked to be finite and >= 0."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ScenarioError(f"{where}: must be a number or a string such as {hint}")
    try:
        value = parse(raw)
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if not math.isfinite(value) or value < 0:
        raise ScenarioError(f"{where}: must be a finite number, not negative")
    return value


class _Table:
    """Typed reads from one TOML table that remember which keys were used."""

    def __init__(self, data: object, source: str, path: str = "") -> None:
        self.source = source
        self.path = path  # dotted TOML path of this table; "" for the top level
        self.where = f"{source} [{path}]" if path else source
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{self.where}: must be a table")
        self.data: Mapping[str, object] = data
        self.used: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.where} {key}"

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str) -> object:
        self.used.add(key)
        return self.data.get(key)

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        raw = self.get(key)
        if raw is None:
            return default
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ScenarioError(f"{self._name(key)}: must be a number")
        if raw < minimum:
            raise ScenarioError(f"{self._name(key)}: must be at least {minimum:g}")
        return float(raw)

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        raw = self.get(key)
        if raw is None:
            return default
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ScenarioError(f"{self._name(key)}: must be a whole number")
        if raw < minimum:
            raise ScenarioError(f"{self._name(key)}: must be at least {minimum}")
        return raw

    def duration(self, key: str, default: float, positive: bool = False) -> float:
        raw = self.get(key)
        if raw is None:
            return default
        seconds = _quantity(raw, self._name(key), parse_duration, "'90s', '36h', '14d'")
        if positive and seconds <= 0:
            raise ScenarioError(f"{self._name(key)}: must be longer than zero")
        return seconds

    def rate(self, key: str, default: float) -> float:
        """Messages per second from a number or a string such as ``'600000/day'``."""
        raw = self.get(key)
        if raw is None:
            return default
        return _quantity(raw, self._name(key), parse_rate, "'7/s', '600000/day'")

    def text(self, key: str, default: str) -> str:
        raw = self.get(key)
        if raw is None:
            return default
        if not isinstance(raw, str):
            raise ScenarioError(f"{self._name(key)}: must be a string")
        return raw

    def table(self, key: str) -> _Table:
        return _Table(self.get(key), self.source, f"{self.path}.{key}" if self.path else key)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ScenarioError(f"{self.where}: unknown key(s) {', '.join(unknown)}")


def _rates(table: _Table, base: WorkerRates) -> WorkerRates:
    raw = table.text("distribution", base.distribution.value)
    try:
        distribution = Distribution(raw)
    except ValueError:
        options = ", ".join(d.value for d in Distribution)
        raise ScenarioError(
            f"{table.where} distribution: {raw!r} is not one of {options}"
        ) from None
    mean = table.rate("mean", base.mean)
    if mean <= 0:
        raise ScenarioError(f"{table.where} mean: a worker's rate must be above zero")
    rates = WorkerRates(distribution, mean, table.rate("sd", base.sd))
    table.done()
    return rates


def _policy(table: _Table, base: AutoscalePolicy) -> AutoscalePolicy:
    """The fields of ``sluice.scaling.AutoscalePolicy``, by the same names."""
    try:
        policy = AutoscalePolicy(
            min_workers=table.integer("min_workers", base.min_workers),
            max_workers=table.integer("max_workers", base.max_workers),
            target_backlog_per_worker=table.integer(
                "target_backlog_per_worker", base.target_backlog_per_worker, minimum=1
            ),
            scale_out_cooldown=table.duration("scale_out_cooldown", base.scale_out_cooldown),
            scale_in_cooldown=table.duration("scale_in_cooldown", base.scale_in_cooldown),
            scale_out_age=table.duration("scale_out_age", base.scale_out_age),
        )
    except ValueError as exc:  # the policy's own checks (min <= max)
        raise ScenarioError(f"{table.where}: {exc}") from exc
    table.done()
    return policy


def _fleet(table: _Table, base: Fleet, step: float) -> Fleet:
    """Fleet keys of the top level or of ``[compare]``; what is not given comes from ``base``."""
    fleet = Fleet(
        label=table.text("label", base.label),
        policy=_policy(table.table("policy"), base.policy) if table.has("policy") else base.policy,
        rates=_rates(table.table("workers"), base.rates) if table.has("workers") else base.rates,
        startup_delay=table.duration("startup_delay", base.startup_delay),
        decision_interval=table.duration("decision_interval", base.decision_interval, True),
        initial_workers=table.integer("initial_workers", base.initial_workers),
    )
    if fleet.decision_interval < step:
        # One decision per step at most: a shorter interval would be silently stretched.
        given = "" if table.has("decision_interval") else " (the default)"
        raise ScenarioError(
            f"{table.where} decision_interval: {fleet.decision_interval:g}s{given} is shorter "
            f"than the step ({step:g}s); make the step no longer than the decision interval"
        )
    return fleet


def _arrivals(table: _Table) -> ArrivalProfile:
    if not table.has("rate"):
        raise ScenarioError(f"{table.where} rate: required, such as '600000/day' or 6.9 (msg/s)")
    per_second = table.rate("rate", 0.0)
    ratio = table.number("peak_to_trough", 1.0, minimum=1.0)
    peak_hour = table.number("peak_hour", 12.0)
    raw_bursts = table.get("bursts") or []
    if not isinstance(raw_bursts, list):
        raise ScenarioError(
            f"{table.where} bursts: must be an array of tables ([[arrivals.bursts]])"
        )
    bursts = tuple(
        _burst(_Table(raw, table.source, f"arrivals.bursts #{n}"))
        for n, raw in enumerate(raw_bursts, start=1)
    )
    table.done()
    return ArrivalProfile(per_second, ratio, peak_hour % 24, bursts)


def _burst(table: _Table) -> Burst:
    if not table.has("at") or not table.has("messages"):
        raise ScenarioError(f"{table.where}: needs `at` (a time) and `messages`")
    burst = Burst(
        table.duration("at", 0.0), table.integer("messages", 0), table.duration("over", 0.0)
    )
    table.done()
    return burst


def scenario_from_mapping(data: Mapping[str, object], source: str = "scenario") -> Scenario:
    top = _Table(data, source)
    if not top.has("duration"):
        raise ScenarioError(f"{source} duration: required (such as '30d')")
    duration = top.duration("duration", 0.0, positive=True)
    step = top.duration("step", 30.0, positive=True)  # the supervisor decides every 30 s
    if step > duration:
        raise ScenarioError(f"{source} step: longer than the duration")
    if not top.has("arrivals"):
        raise ScenarioError(f"{source}: an [arrivals] table is required")
    fleet = _fleet(top, Fleet("baseline", AutoscalePolicy(), WorkerRates()), step)
    compare = None
    if top.has("compare"):
        # What [compare] leaves out is the first fleet's: compare only what differs.
        table = top.table("compare")
        compare = _fleet(table, replace(fleet, label="compare"), step)
        table.done()
    scenario = Scenario(
        name=top.text("name", Path(source).stem),
        description=top.text("description", ""),
        duration=duration,
        step=step,
        initial_backlog=top.integer("initial_backlog", 0),
        initial_backlog_age=top.duration("initial_backlog_age", 0.0),
        arrivals=_arrivals(top.table("arrivals")),
        seed=top.integer("seed", 1),
        fleet=fleet,
        compare=compare,
    )
    top.done()
    return scenario


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; ``ScenarioError`` names the file and key on any fault."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from exc
    return scenario_from_mapping(data, str(path))
