"""Prometheus metrics: the runtime's counts (``dotwist.stats``) read at scrape time.

Nothing here runs on the message path. A ``RuntimeCollector`` is registered with a
``prometheus_client.CollectorRegistry`` of the service's own (not the library's global one, so two
services in one process do not collide); each scrape walks the namespaces, their live objects and
the hibernation records, and yields metric families. ``metricsResource`` serves the text format.

Every metric with per-object meaning has the labels ``namespace`` (the binding's namespace name)
and ``class`` (the Durable Object class).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from twisted.web.resource import Resource

from .stats import SOCKET_EVENTS

if TYPE_CHECKING:  # pragma: no cover
    from .server import DotwistSite, DotwistWebSocketFactory
    from .worker import Runtime

__all__ = ["RuntimeCollector", "MetricsResource", "makeRegistry"]


class RuntimeCollector(Collector):
    """The metrics of one runtime (and, if given, of the site and WebSocket factory serving it)."""

    def __init__(
        self,
        runtime: "Runtime",
        site: Optional["DotwistSite"] = None,
        factory: Optional["DotwistWebSocketFactory"] = None,
    ) -> None:
        self.runtime = runtime
        self.site = site
        self.factory = factory

    def collect(self) -> Iterator[Metric]:
        registry = self.runtime.registry
        L = ["namespace", "class"]
        objects = GaugeMetricFamily(
            "dotwist_objects",
            "Durable Objects now: live (in memory) or hibernated (out of memory, with hibernatable "
            "WebSockets open).",
            labels=L + ["state"],
        )
        sockets = GaugeMetricFamily(
            "dotwist_hibernatable_websockets",
            "Open hibernatable WebSockets, by whether their object is in memory.",
            labels=L + ["state"],
        )
        pending = GaugeMetricFamily(
            "dotwist_pending_calls", "Calls queued or running at live objects.", labels=L
        )
        constructed = CounterMetricFamily(
            "dotwist_objects_constructed", "Object incarnations constructed.", labels=L
        )
        departures = CounterMetricFamily(
            "dotwist_object_departures",
            "Objects that left memory, by the state they left in (hibernated, evicted, broken).",
            labels=L + ["state"],
        )
        events = CounterMetricFamily(
            "dotwist_events", "Events delivered to objects, by kind.", labels=L + ["kind"]
        )
        errors = CounterMetricFamily(
            "dotwist_errors", "Exceptions that escaped objects' code, by kind.", labels=L + ["kind"]
        )
        resets = CounterMetricFamily("dotwist_resets", "Objects reset (broken).", labels=L)
        overloaded = CounterMetricFamily(
            "dotwist_overloaded",
            "Calls refused because too many were pending at the object (overloaded).",
            labels=L,
        )
        gateWaits = CounterMetricFamily(
            "dotwist_gate_waits",
            "Events that waited at an input gate, and outputs held by an output gate until the "
            "writes they depend on were durable.",
            labels=L + ["gate"],
        )
        storageOps = CounterMetricFamily(
            "dotwist_storage_operations", "ctx.storage operations, by kind.", labels=L + ["op"]
        )
        storageBytes = CounterMetricFamily(
            "dotwist_storage_bytes",
            "Key-value bytes (keys and encoded values) read and written.",
            labels=L + ["direction"],
        )
        sqlRows = CounterMetricFamily(
            "dotwist_storage_sql_rows", "Rows read and written by sql.exec.", labels=L + ["direction"]
        )
        commitFailures = CounterMetricFamily(
            "dotwist_storage_commit_failures", "Storage commits that failed.", labels=L
        )
        commits = HistogramMetricFamily(
            "dotwist_storage_commit_seconds",
            "Time to make one batch of writes durable (an fsync for SQLite).",
            labels=L,
        )
        alarmRuns = CounterMetricFamily("dotwist_alarm_runs", "alarm() handler runs.", labels=L)
        alarmRetries = CounterMetricFamily(
            "dotwist_alarm_retries", "alarm() retries scheduled after a failed run.", labels=L
        )
        alarmFailures = CounterMetricFamily(
            "dotwist_alarm_failures", "Alarms given up after their last retry.", labels=L
        )
        hibernated: dict[str, tuple[int, int, int]] = {}
        for (nsName, key), record in list(registry.records.items()):
            if not record.sockets:
                continue
            live = registry.liveActor(nsName, key) is not None
            objs, liveSockets, hibSockets = hibernated.get(nsName, (0, 0, 0))
            n = len(record.sockets)
            hibernated[nsName] = (
                objs + (0 if live else 1),
                liveSockets + (n if live else 0),
                hibSockets + (0 if live else n),
            )
        for ns in list(registry.namespaces.values()):
            labels = [ns.name, ns.cls.__name__]
            st = ns.stats
            inputWaits, outputWaits = st.inputGateWaits, st.outputGateWaits
            bytesRead, bytesWritten = st.storageBytesRead, st.storageBytesWritten
            pendingCalls = 0
            for actor in list(ns.actors.values()):
                inputWaits += actor.inputGate.waits
                outputWaits += actor.outputGate.waits
                pendingCalls += actor.pendingCalls
                session = actor.openSession
                if session is not None and not session.closed:
                    bytesRead += getattr(session.store, "bytesRead", 0)
                    bytesWritten += getattr(session.store, "bytesWritten", 0)
            hibObjects, liveSockets, hibSockets = hibernated.get(ns.name, (0, 0, 0))
            objects.add_metric(labels + ["live"], len(ns.actors))
            objects.add_metric(labels + ["hibernated"], hibObjects)
            sockets.add_metric(labels + ["live"], liveSockets)
            sockets.add_metric(labels + ["hibernated"], hibSockets)
            pending.add_metric(labels, pendingCalls)
            constructed.add_metric(labels, st.constructed)
            for state, n in st.departures.items():
                departures.add_metric(labels + [state], n)
            counts = dict(st.events)
            for name, kind in SOCKET_EVENTS.items():
                counts[kind] = counts.get(kind, 0) + st.socketEvents.get(name, 0)
            for kind, n in counts.items():
                events.add_metric(labels + [kind], n)
            for kind, n in st.errors.items():
                errors.add_metric(labels + [kind], n)
            resets.add_metric(labels, st.resets)
            overloaded.add_metric(labels, st.overloaded)
            gateWaits.add_metric(labels + ["input"], inputWaits)
            gateWaits.add_metric(labels + ["output"], outputWaits)
            for op, n in st.storageOps.items():
                storageOps.add_metric(labels + [op], n)
            storageBytes.add_metric(labels + ["read"], bytesRead)
            storageBytes.add_metric(labels + ["written"], bytesWritten)
            sqlRows.add_metric(labels + ["read"], st.sqlRowsRead)
            sqlRows.add_metric(labels + ["written"], st.sqlRowsWritten)
            commitFailures.add_metric(labels, st.commitFailures)
            histogram = st.commitSeconds
            commits.add_metric(
                labels,
                [(_bound(b), n) for b, n in histogram.cumulative()],
                histogram.sum,
            )
            alarmRuns.add_metric(labels, st.alarmRuns)
            alarmRetries.add_metric(labels, st.alarmRetries)
            alarmFailures.add_metric(labels, st.alarmFailures)
        yield from (
            objects, sockets, pending, constructed, departures, events, errors, resets, overloaded,
            gateWaits, storageOps, storageBytes, sqlRows, commitFailures, commits, alarmRuns,
            alarmRetries, alarmFailures,
        )
        yield GaugeMetricFamily(
            "dotwist_alarms_scheduled", "Alarm timers set in this process.",
            value=registry.alarms.pendingCount(),
        )
        if self.factory is not None:
            yield GaugeMetricFamily(
                "dotwist_websockets_open", "WebSocket connections open on this server.",
                value=len(self.factory.connections),
            )
        if self.site is not None:
            responses = CounterMetricFamily(
                "dotwist_http_responses", "HTTP responses sent, by status (101: WebSocket upgrades).",
                labels=["code"],
            )
            for code, n in sorted(self.site.responses.items()):
                responses.add_metric([str(code)], n)
            yield responses
            front = self.site.front
            if front is not None:
                yield GaugeMetricFamily(
                    "dotwist_http_requests_in_flight", "HTTP requests being handled now.",
                    value=front.inFlight,
                )


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def makeRegistry(collector: RuntimeCollector, process: bool = True) -> CollectorRegistry:
    """A registry with the runtime's metrics and, if ``process``, the process's (CPU, memory,
    open files, garbage collections), as ``prometheus_client`` collects them."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if process:
        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class MetricsResource(Resource):
    """``GET`` → the registry's metrics in Prometheus' text format."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        Resource.__init__(self)
        self.registry = registry

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)
