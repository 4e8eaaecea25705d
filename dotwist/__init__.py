"""dotwist: Cloudflare's Workers and Durable Objects programming model, self-hosted on Twisted.

The public API mirrors Cloudflare's names::

    from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint
"""

from .config import Limits
from .errors import ConfigError, DurableObjectError, RangeError
from .alarms import AlarmInfo
from .fetch import Headers, Request, Response
from .hibernation import WebSocketRequestResponsePair
from .ids import DurableObjectId
from .outbound import fetch
from .rpc import RemoteError
from .objects import DurableObject, DurableObjectState
from .stubs import DurableObjectNamespace, DurableObjectStub
from .websocket import CloseEvent, ErrorEvent, MessageEvent, WebSocket, WebSocketPair
from .worker import App, Env, ExecutionContext, Runtime, WorkerEntrypoint

__version__ = "0.1.0"

__all__ = [
    "AlarmInfo",
    "App",
    "CloseEvent",
    "ConfigError",
    "DurableObject",
    "DurableObjectError",
    "DurableObjectId",
    "DurableObjectNamespace",
    "DurableObjectState",
    "DurableObjectStub",
    "Env",
    "ErrorEvent",
    "ExecutionContext",
    "Headers",
    "Limits",
    "MessageEvent",
    "RangeError",
    "Request",
    "Response",
    "Runtime",
    "WebSocket",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "WorkerEntrypoint",
    "fetch",
    "RemoteError",
]
