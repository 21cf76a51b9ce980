"""Prometheus metrics: the counters and gauges that each part already keeps, read at scrape time.

Nothing on a hot path touches prometheus_client: the HTTP edge, the authenticator, the event hub,
the webhook dispatcher and the SIP carrier each keep plain numbers (`stats()`), and this collector
turns them into metric families only when `/metrics` is scraped. A value that is a mapping becomes
one family with a label (e.g. HTTP refusals by status).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

Value = int | float | Mapping[str, int | float]
Stats = Callable[[], Mapping[str, Value]]

CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass(frozen=True, slots=True)
class Source:
    """One part's numbers: `bridgeline_<subsystem>_<name>`; names in `counters` only ever grow."""

    subsystem: str
    read: Stats
    counters: frozenset[str] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)  # name -> label of a mapping value


class StatsCollector(Collector):
    def __init__(self, sources: Sequence[Source]) -> None:
        self._sources = list(sources)

    def add(self, source: Source) -> None:
        self._sources.append(source)

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            for name, value in source.read().items():
                yield _family(source, name, value)


def _family(source: Source, name: str, value: Value) -> Metric:
    full = f"bridgeline_{source.subsystem}_{name}"
    doc = f"{source.subsystem} {name.replace('_', ' ')}"
    label = source.labels.get(name)
    labels = [label] if label is not None and isinstance(value, Mapping) else None
    family: CounterMetricFamily | GaugeMetricFamily
    if name in source.counters:
        family = CounterMetricFamily(full, doc, labels=labels)
    else:
        family = GaugeMetricFamily(full, doc, labels=labels)
    if isinstance(value, Mapping):
        for key, number in sorted(value.items()):
            family.add_metric([key], float(number))
    else:
        family.add_metric([], float(value))
    return family


class Metrics:
    """The registry the `/metrics` route renders; sources are added by the wiring in main/.

    `reader` is the one account that may scrape it (the server's main account): the figures are
    server-wide, so no tenant should see them."""

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = StatsCollector([])
        self.registry.register(self.collector)

    def add(self, source: Source) -> None:
        self.collector.add(source)

    def render(self) -> bytes:
        return generate_latest(self.registry)
