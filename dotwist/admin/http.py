"""The admin interface over HTTP: JSON, on its own endpoint, every request checked for the token.

Off unless ``--admin ENDPOINT`` is given; a bare port or a ``tcp:`` description without
``interface=`` listens on 127.0.0.1 only. Every request must carry ``Authorization: Bearer
<token>`` (``--admin-token`` or ``--admin-token-file``); without it, or with another token, the
answer is ``401`` and nothing else happens. The token is compared in constant time (digests of
both sides) and never logged.

Routes (JSON in and out; ``limit``/``after`` page through long lists, ``next`` is the ``after`` of
the next page, null at the end)::

    GET    /namespaces
    GET    /namespaces/{ns}/objects?limit=&after=
    GET    /namespaces/{ns}/names?name=
    GET    /namespaces/{ns}/objects/{id}
    GET    /namespaces/{ns}/objects/{id}/kv?limit=&after=&prefix=
    GET    /namespaces/{ns}/objects/{id}/sql
    GET    /namespaces/{ns}/objects/{id}/sql/{table}?limit=&after=
    DELETE /namespaces/{ns}/objects/{id}
    POST   /namespaces/{ns}/objects/{id}/alarm        run its alarm now
    POST   /backup          {"destination": "/path/on/the/server"}
    GET    /metrics         Prometheus text format
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Callable, Optional

from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from .inspector import AdminError, Inspector

__all__ = ["AdminApp", "TokenGuard", "adminEndpoint", "readToken"]

_log = Logger(namespace="dotwist.admin")


def adminEndpoint(description: str) -> str:
    """``--admin``'s value as an endpoint description: a bare port means 127.0.0.1, and a
    ``tcp:`` description without ``interface=`` gets ``interface=127.0.0.1``."""
    text = description.strip()
    if text.isdigit():
        return f"tcp:{text}:interface=127.0.0.1"
    parts = text.split(":")
    if parts[0] in ("tcp", "tcp6") and not any(p.startswith("interface=") for p in parts[1:]):
        return text + (":interface=::1" if parts[0] == "tcp6" else ":interface=127.0.0.1")
    return text


def readToken(value: Optional[str], path: Optional[str]) -> Optional[str]:
    """The admin token from ``--admin-token`` or the first line of ``--admin-token-file``."""
    if path:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
        if not token:
            raise ValueError(f"the admin token file {path} is empty")
        return token
    return value


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class TokenGuard(Resource):
    """Passes a request on to ``inner`` only if it carries the token; else ``401``."""

    isLeaf = True

    def __init__(self, inner: IResource, token: str) -> None:
        Resource.__init__(self)
        if not token:
            raise ValueError("the admin interface needs a token")
        self._inner = inner
        self._digest = _digest(token.encode("utf-8"))

    def render(self, request: Any) -> Any:
        header = request.getHeader(b"authorization") or b""
        scheme, _, provided = header.partition(b" ")
        ok = scheme.lower() == b"bearer" and hmac.compare_digest(_digest(provided.strip()), self._digest)
        if not ok:
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Bearer realm="dotwist-admin"')
            request.setHeader(b"content-type", b"application/json")
            return b'{"error": "missing or wrong admin token"}\n'
        return self._inner.render(request)


def _json(request: Any, value: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value).encode("utf-8") + b"\n"


def _arg(request: Any, name: str) -> Optional[str]:
    values = request.args.get(name.encode("ascii"))
    return values[0].decode("utf-8") if values else None


class AdminApp:
    """The routes, over one ``Inspector``."""

    app = Klein()

    def __init__(self, inspector: Inspector, metrics: Optional[CollectorRegistry] = None) -> None:
        self.inspector = inspector
        self.metricsRegistry = metrics

    def resource(self, token: str) -> IResource:
        guard: IResource = TokenGuard(self.app.resource(), token)
        return guard

    def _run(self, request: Any, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except AdminError as e:
            return _json(request, {"error": str(e)}, e.status)
        except Exception:
            _log.failure("Admin request {method} {uri} failed", method=request.method, uri=request.uri)
            return _json(request, {"error": "internal error; see the server's log"}, 500)
        if isinstance(result, Deferred):
            def ok(value: Any) -> bytes:
                return _json(request, value)

            def failed(f: Failure) -> bytes:
                if isinstance(f.value, AdminError):
                    return _json(request, {"error": str(f.value)}, f.value.status)
                _log.failure("Admin request {method} {uri} failed", f, method=request.method, uri=request.uri)
                return _json(request, {"error": f"{type(f.value).__name__}: {f.value}"}, 500)

            return result.addCallbacks(ok, failed)
        return _json(request, result)

    @app.route("/namespaces", methods=["GET"])
    def namespaces(self, request: IRequest) -> Any:
        return self._run(request, lambda: {"namespaces": self.inspector.namespaces()})

    @app.route("/namespaces/<ns>/objects", methods=["GET"])
    def objects(self, request: IRequest, ns: str) -> Any:
        return self._run(
            request, lambda: self.inspector.objects(ns, _arg(request, "limit"), _arg(request, "after"))
        )

    @app.route("/namespaces/<ns>/names", methods=["GET"])
    def names(self, request: IRequest, ns: str) -> Any:
        def run() -> Any:
            name = _arg(request, "name")
            if name is None:
                raise AdminError(400, "give the name: ?name=...")
            return {"namespace": ns, "name": name, "ids": self.inspector.findByName(ns, name)}

        return self._run(request, run)

    @app.route("/namespaces/<ns>/objects/<oid>", methods=["GET"])
    def object(self, request: IRequest, ns: str, oid: str) -> Any:
        return self._run(request, lambda: self.inspector.object(ns, oid))

    @app.route("/namespaces/<ns>/objects/<oid>", methods=["DELETE"])
    def delete(self, request: IRequest, ns: str, oid: str) -> Any:
        return self._run(request, lambda: self.inspector.delete(ns, oid))

    @app.route("/namespaces/<ns>/objects/<oid>/kv", methods=["GET"])
    def kv(self, request: IRequest, ns: str, oid: str) -> Any:
        return self._run(
            request,
            lambda: self.inspector.kv(
                ns, oid, _arg(request, "limit"), _arg(request, "after"), _arg(request, "prefix")
            ),
        )

    @app.route("/namespaces/<ns>/objects/<oid>/sql", methods=["GET"])
    def tables(self, request: IRequest, ns: str, oid: str) -> Any:
        return self._run(request, lambda: self.inspector.tables(ns, oid))

    @app.route("/namespaces/<ns>/objects/<oid>/sql/<table>", methods=["GET"])
    def rows(self, request: IRequest, ns: str, oid: str, table: str) -> Any:
        return self._run(
            request,
            lambda: self.inspector.rows(ns, oid, table, _arg(request, "limit"), _arg(request, "after")),
        )

    @app.route("/namespaces/<ns>/objects/<oid>/alarm", methods=["POST"])
    def fireAlarm(self, request: IRequest, ns: str, oid: str) -> Any:
        return self._run(request, lambda: self.inspector.fireAlarm(ns, oid))

    @app.route("/backup", methods=["POST"])
    def backup(self, request: IRequest) -> Any:
        def run() -> Any:
            try:
                body = json.loads(request.content.read() or b"{}")
                destination = body["destination"]
                if not isinstance(destination, str) or not destination:
                    raise ValueError()
            except (ValueError, KeyError, TypeError):
                raise AdminError(400, 'POST /backup takes {"destination": "/path/for/the/backup"}') from None
            from .backup import BackupError

            try:
                return self.inspector.backup(destination)
            except BackupError as e:
                raise AdminError(409, str(e)) from None

        return self._run(request, run)

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: IRequest) -> Any:
        if self.metricsRegistry is None:
            return _json(request, {"error": "no metrics"}, 404)
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.metricsRegistry)

    @app.handle_errors(Exception)
    def notFound(self, request: IRequest, failure: Failure) -> Any:
        from werkzeug.exceptions import MethodNotAllowed, NotFound

        if isinstance(failure.value, NotFound):
            return _json(request, {"error": "no such route"}, 404)
        if isinstance(failure.value, MethodNotAllowed):
            return _json(request, {"error": "method not allowed"}, 405)
        _log.failure("Admin request failed", failure)
        return _json(request, {"error": "internal error; see the server's log"}, 500)
