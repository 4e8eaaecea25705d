"""bench/run's driver: WebSocket servers side by side on this machine.

Run it through ``bench/run`` (which makes bench/.venv with matplotlib, installs workerd from
npm when missing, then execs this file). Each server under test is started fresh for every
figure, pinned to core 0 (``taskset -c 0``); the C load generator (bench/wsload.c) runs pinned
to core 1. Each figure is repeated (default 3 times, servers interleaved) and the median is
reported: a markdown table on stdout and in bench/results/latest.md, JSON in
bench/results/latest.json, a plot in bench/results/latest.png. After the servers' figures the
in-process benchmarks (``INPROCESS``: RPC, storage, hibernation) run in the project venv, and
their reports go into the same files.

    bench/run                                   # everything (about 30 minutes, 11 servers + in-process)
    bench/run --quick                           # short windows, 1 repeat (about 3 minutes)
    bench/run --servers reference,dotwist-seed  # a subset (cecho = generator ceiling; groups: dotwist, peers, python)
    bench/run --list                            # the servers and figures
"""

import argparse
import datetime
import json
import os
import platform
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BUILD = HERE / "build"
LOGS = BUILD / "logs"
RESULTS = HERE / "results"
WSLOAD = BUILD / "wsload"
WSECHO = BUILD / "wsecho"
WORKERD = HERE / "workerd" / "node_modules" / "@cloudflare" / "workerd-linux-64" / "bin" / "workerd"
SERVER_CORE = "0"
LOAD_CORE = "1"


def project_python():
    env = os.environ.get("DOTWIST_BENCH_PYTHON")
    if env:
        return env
    return str(REPO / ".venv" / "bin" / "python")


# --- servers --------------------------------------------------------------------------
# cmd(port) -> argv; ws: WebSocket path; http: HTTP path for the http figure (None: skipped).
# dotwist runs under twistd, as the project's README documents (`twistd -n dotwist`), in the
# foreground with no pidfile. (`python -m twisted` is the `twist` runner, which rejects twistd's
# `-n --pidfile=`.) twistd is started as `python -c "...twistd run()"` so that the server's
# pid is the Python process itself.
TWISTD = ("-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=")


def _py(*args):
    return lambda port: [project_python(), *[a.format(port=port) for a in args]]


SERVERS = {
    "cecho": {
        "label": "C epoll echo (generator ceiling)",
        "cmd": lambda port: [str(WSECHO), str(port)],
        "ws": "/",
        "http": "/",
        "ceiling": True,
        "note": "bench/wsecho.c: minimal single-threaded epoll echo server; shows what wsload can drive",
    },
    "reference": {
        "label": "Autobahn echo (reference)",
        "cmd": _py("conformance/autobahn_echo.py", "{port}", "--no-deflate"),
        "ws": "/",
        "http": None,
        "note": "plain Autobahn|Python WebSocketServerProtocol echo on Twisted; no HTTP endpoint",
    },
    "dotwist-seed": {
        "label": "dotwist seed",
        # --no-access-log: the figures before request lines existed were taken without them.
        "cmd": _py(*TWISTD, "dotwist", "--listen", "tcp:{port}:interface=127.0.0.1", "--no-access-log"),
        "ws": "/websocket",
        "http": "/getCurrentConnections",
        "note": "default app (Cloudflare's WebSocket server example): Worker -> Durable Object, "
        "replies '[Durable Object]: <msg>'",
    },
    "dotwist-seed-epoll": {
        "label": "dotwist seed (epoll reactor)",
        "cmd": _py(*TWISTD, "-r", "epoll", "dotwist", "--listen", "tcp:{port}:interface=127.0.0.1"),
        "ws": "/websocket",
        "http": "/getCurrentConnections",
        "note": "the seed on Twisted's epoll reactor (twistd -r epoll): the default before asyncio; "
        "Workers and objects cannot use asyncio there",
    },
    "dotwist-seed-uvloop": {
        "label": "dotwist seed (uvloop)",
        "cmd": _py(*TWISTD, "dotwist", "--loop", "uvloop", "--listen", "tcp:{port}:interface=127.0.0.1"),
        "ws": "/websocket",
        "http": "/getCurrentConnections",
        "note": "the seed on Twisted's asyncio reactor over uvloop (--loop uvloop)",
    },
    "dotwist-echo": {
        "label": "dotwist echo",
        "cmd": _py(*TWISTD, "dotwist", "--listen", "tcp:{port}:interface=127.0.0.1", "--app", "dotwist.examples.echo", "--no-access-log"),
        "ws": "/echo",
        "http": None,
        "note": "dotwist.examples.echo: Worker -> Durable Object, echoes unchanged; no 2xx HTTP path",
    },
    "workerd-seed": {
        "label": "workerd seed",
        "cmd": lambda port: [
            str(WORKERD),
            "serve",
            str(HERE / "workerd" / "config.capnp"),
            "--socket-addr",
            f"http=127.0.0.1:{port}",
        ],
        "ws": "/websocket",
        "http": "/getCurrentConnections",
        "note": "Cloudflare's workerd (npm 'workerd') running bench/workerd/seed.js, the seed app in JavaScript, "
        "Durable Object storage in memory",
    },
}
# The peers: plain echo servers of other libraries, run with bench's own Python (bench/.venv, where
# bench/run installs them pinned from requirements.txt) or Node (bench/peers/node, pinned in its
# package.json). "requires": Python modules that must import (else the server is skipped);
# "figures": the figures it runs (the 16 KiB binary echo is left out of the peers' default set to
# keep a full run under 20 minutes; --figures binary_16k_10 asks for it explicitly).
BENCH_PYTHON = sys.executable
NODE_WS = HERE / "peers" / "node" / "ws_echo.js"
NODE_WS_MODULE = HERE / "peers" / "node" / "node_modules" / "ws" / "package.json"
PEER_FIGURES = {"echo_1", "echo_100", "echo_1000", "churn_50", "idle_rss", "http_10", "http_close_10"}


def _bench(script, *args):
    return lambda port: [BENCH_PYTHON, str(HERE / "peers" / script), str(port), *args]


SERVERS.update({
    "aiohttp": {
        "label": "aiohttp echo (uvloop)",
        "cmd": _bench("aiohttp_echo.py"),
        "ws": "/websocket",
        "http": "/getCurrentConnections",
        "requires": ["aiohttp", "uvloop"],
        "figures": PEER_FIGURES,
        "note": "bench/peers/aiohttp_echo.py: plain aiohttp WebSocketResponse echo on uvloop, no access log; "
        "/getCurrentConnections answers the open-socket count",
    },
    "websockets": {
        "label": "websockets echo (uvloop)",
        "cmd": _bench("websockets_echo.py"),
        "ws": "/websocket",
        "http": None,
        "requires": ["websockets", "uvloop"],
        "figures": PEER_FIGURES,
        "note": "bench/peers/websockets_echo.py: plain websockets (asyncio implementation) echo on uvloop, "
        "library defaults; no HTTP server",
    },
    "picows": {
        "label": "picows echo (uvloop)",
        "cmd": _bench("picows_echo.py"),
        "ws": "/websocket",
        "http": None,
        "requires": ["picows", "uvloop"],
        "figures": PEER_FIGURES,
        "note": "bench/peers/picows_echo.py: plain picows frame echo on uvloop; no HTTP path",
    },
    "node-ws": {
        "label": "Node ws echo",
        "cmd": lambda port: ["node", str(NODE_WS), str(port)],
        "ws": "/websocket",
        "http": "/getCurrentConnections",
        "figures": PEER_FIGURES,
        "note": "bench/peers/node/ws_echo.js: Node's http server with ws (no permessage-deflate, no native "
        "add-ons); /getCurrentConnections answers the open-socket count",
    },
})
SERVER_ORDER = [
    "cecho", "reference", "dotwist-seed", "dotwist-seed-epoll", "dotwist-seed-uvloop", "dotwist-echo",
    "workerd-seed",
    "aiohttp", "websockets", "picows", "node-ws",
]
#: Names --servers also takes, for a group of servers.
SERVER_GROUPS = {
    "all": SERVER_ORDER,
    "dotwist": ["dotwist-seed", "dotwist-echo"],
    "reactors": ["reference", "dotwist-seed", "dotwist-seed-epoll", "dotwist-seed-uvloop"],
    "peers": ["workerd-seed", "aiohttp", "websockets", "picows", "node-ws"],
    "python": ["reference", "dotwist-seed", "dotwist-echo", "aiohttp", "websockets", "picows"],
}

# --- figures --------------------------------------------------------------------------
# kind: echo/http -> rate + latency; churn -> rate; idle -> KiB per socket.
FIGURES = [
    {"id": "echo_1", "kind": "echo", "conns": 1, "title": "echo 32 B text, 1 conn", "unit": "msg/s"},
    {"id": "echo_100", "kind": "echo", "conns": 100, "title": "echo 32 B text, 100 conns", "unit": "msg/s"},
    {"id": "echo_1000", "kind": "echo", "conns": 1000, "title": "echo 32 B text, 1000 conns", "unit": "msg/s"},
    {
        "id": "binary_16k_10",
        "kind": "echo",
        "conns": 10,
        "binary": True,
        "size": 16384,
        "title": "echo 16 KiB binary, 10 conns",
        "unit": "msg/s",
    },
    {"id": "churn_50", "kind": "churn", "conns": 50, "title": "churn, 50 in parallel", "unit": "conn/s"},
    {"id": "idle_rss", "kind": "idle", "conns": 5000, "title": "RSS per idle socket", "unit": "KiB/socket"},
    {"id": "http_10", "kind": "http", "conns": 10, "title": "HTTP GET keep-alive, 10 conns", "unit": "req/s"},
    {
        "id": "http_close_10",
        "kind": "http",
        "conns": 10,
        "close": True,
        "title": "HTTP GET, a connection per request, 10 in parallel",
        "unit": "req/s",
    },
]
PRIMARY = {"echo": "rate", "churn": "rate", "http": "rate", "idle": "kib_per_socket"}

# --- in-process benchmarks ------------------------------------------------------------
# Figures of issue 18 that are not a server under load: each is its own script, run after the
# servers' figures in the project venv, in the same run. Each prints a markdown table (kept as
# the report) and writes JSON (kept whole in latest.json). "json": where the script writes it,
# for a full run and for --quick.
INPROCESS = [
    {
        "id": "rpc",
        "script": "rpc_bench.py",
        "title": "RPC through a stub against stub.fetch, one object and 1,000 (calls/s, CPU per call)",
        "json": ("rpc.json", "rpc.json"),
        "timeout": 1800,
    },
    {
        "id": "storage",
        "script": "storage_bench.py",
        "title": "Durable storage against plain sqlite3 with the same durability",
        "json": ("storage.json", "storage.json"),
        "timeout": 2400,
    },
    {
        "id": "hibernation",
        "script": "hibernation_bench.py",
        "title": "Hibernated WebSockets: memory per socket and the time to wake an object",
        "json": ("hibernation.json", "hibernation-quick.json"),
        "timeout": 2400,
    },
]


def run_inprocess(ids, quick):
    """Run the in-process benchmarks named in ``ids``; what each reported, by id."""
    results = {}
    for spec in INPROCESS:
        if spec["id"] not in ids:
            continue
        argv = [project_python(), str(HERE / spec["script"])] + (["--quick"] if quick else [])
        shown = shlex.join(["bench/" + spec["script"]] + argv[2:])
        log(f"[in-process] {spec['id']}: {shown}")
        entry = {"title": spec["title"], "command": shown}
        if not os.path.exists(argv[0]):
            entry["status"] = f"skipped: {argv[0]} missing (project venv)"
            results[spec["id"]] = entry
            continue
        jsonPath = RESULTS / spec["json"][1 if quick else 0]
        t = time.monotonic()
        try:
            done = subprocess.run(
                argv, cwd=REPO, capture_output=True, text=True, timeout=spec["timeout"]
            )
        except subprocess.TimeoutExpired:
            entry["status"] = f"stopped: no result after {spec['timeout']} s"
            results[spec["id"]] = entry
            log(f"[in-process] {spec['id']}: {entry['status']}")
            continue
        entry["elapsed_s"] = round(time.monotonic() - t)
        entry["report"] = done.stdout.strip()
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-5:]
            entry["status"] = f"failed (exit {done.returncode}): " + " / ".join(last)
        else:
            entry["status"] = "ok"
            try:
                entry["results"] = json.loads(jsonPath.read_text())
            except (OSError, ValueError) as e:
                entry["status"] = f"ran, but its JSON ({jsonPath}) could not be read: {e}"
        log(f"[in-process] {spec['id']}: {entry['status']} ({entry['elapsed_s']} s)")
        results[spec["id"]] = entry
    return results



def log(msg=""):
    print(msg, flush=True)


# --- helpers --------------------------------------------------------------------------


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_tcp(port, proc, timeout):
    """Poll a TCP connect until the server accepts; False if it died or timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, 65536)) if hard != resource.RLIM_INFINITY else 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tail(path, n=15):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


class Server:
    def __init__(self, name, spec, tag):
        self.name, self.spec = name, spec
        self.port = free_port()
        self.argv = spec["cmd"](self.port)
        LOGS.mkdir(parents=True, exist_ok=True)
        self.logpath = LOGS / f"{name}-{tag}.log"
        self.proc = None

    def start(self, timeout=30):
        self.logf = open(self.logpath, "wb")
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *self.argv],
            cwd=str(REPO),
            stdin=subprocess.DEVNULL,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=raise_nofile,
        )
        if not wait_tcp(self.port, self.proc, timeout):
            rc = self.proc.poll()
            self.stop()
            why = f"exited with status {rc}" if rc is not None else f"did not accept TCP within {timeout} s"
            return f"{why}; log {self.logpath}:\n{tail(self.logpath)}"
        return None

    @property
    def pid(self):
        return self.proc.pid  # taskset execs the server, so this is the server's own pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.logf.close()


def wsload_argv(mode, port, path, conns, cfg, pid=None, extra=()):
    argv = [
        "taskset", "-c", LOAD_CORE, str(WSLOAD), mode,
        "--port", str(port), "--path", path, "--conns", str(conns),
        "--warmup", str(cfg.warmup), "--duration", str(cfg.duration),
        "--connect-timeout", str(cfg.connect_timeout),
    ]
    if pid:
        argv += ["--pid", str(pid)]
    return argv + list(extra)


def run_wsload(argv, timeout):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, text=True)
    except subprocess.TimeoutExpired:
        return {"error": f"wsload timed out after {timeout} s"}
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": f"wsload exit {p.returncode}: {p.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


def measure_idle(server, fig, cfg):
    """RSS per idle socket: (RSS holding N idle sockets - RSS after a warm-up) / N, in KiB."""
    # warm-up: a few connections exercise the code paths (imports, first objects) first
    warm = run_wsload(
        ["taskset", "-c", LOAD_CORE, str(WSLOAD), "echo", "--port", str(server.port), "--path", server.spec["ws"],
         "--conns", "10", "--warmup", "0", "--duration", "1", "--connect-timeout", "30"],
        timeout=60,
    )
    time.sleep(0.5)  # let the closes be processed before the baseline
    base = rss_kib(server.pid)
    n = cfg.idle_sockets
    argv = ["taskset", "-c", LOAD_CORE, str(WSLOAD), "idle", "--port", str(server.port),
            "--path", server.spec["ws"], "--conns", str(n), "--connect-timeout", str(cfg.idle_connect_timeout),
            "--hold", "60"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = None
    deadline = time.monotonic() + cfg.idle_connect_timeout + 15
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        if r:
            line = p.stdout.readline()
            if not line:
                break
            if line.startswith("READY"):
                ready = line.strip()
                break
    result = {"warmup_error": warm.get("error") or warm.get("first_error") or None, "rss_baseline_kib": base}
    if ready is None:
        p.kill()
        p.wait()
        result["error"] = "idle: no READY from wsload (" + (p.stderr.read() or "").strip()[-200:] + ")"
        return result
    ok = int(ready.split("ok=")[1].split()[0])
    time.sleep(1.0)  # settle: let the server finish the last handshakes' bookkeeping
    rss1 = rss_kib(server.pid)
    time.sleep(0.5)
    rss2 = rss_kib(server.pid)
    try:
        out, err = p.communicate("close\n", timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    final = {}
    for line in out.splitlines():
        if line.startswith("{"):
            final = json.loads(line)
    held = ok - int(final.get("dropped_during_hold", 0))
    result.update(
        {
            "sockets_requested": n,
            "sockets_ok": ok,
            "sockets_held": held,
            "rss_idle_kib": rss2,
            "rss_idle_first_sample_kib": rss1,
            "errors": final.get("errors"),
            "first_error": final.get("first_error"),
        }
    )
    if base is None or rss2 is None or held <= 0:
        result["error"] = "idle: server gone or no socket held"
        return result
    result["kib_per_socket"] = round((rss2 - base) / held, 2)
    if held < n:
        result["warning"] = f"only {held} of {n} sockets held"
    return result


def run_figure(name, spec, fig, cfg, rep):
    """Start the server fresh, run one figure, stop it. Returns (result dict, start error or None)."""
    server = Server(name, spec, f"{fig['id']}-r{rep}")
    err = server.start(timeout=cfg.start_timeout)
    if err:
        return None, err
    try:
        if fig["kind"] == "idle":
            res = measure_idle(server, fig, cfg)
        else:
            path = spec["http"] if fig["kind"] == "http" else spec["ws"]
            extra = []
            if fig.get("binary"):
                extra += ["--binary"]
            if fig.get("size"):
                extra += ["--size", str(fig["size"])]
            if fig.get("close"):
                extra += ["--close"]
            argv = wsload_argv(fig["kind"], server.port, path, fig["conns"], cfg, server.pid, extra)
            res = run_wsload(argv, timeout=cfg.connect_timeout + cfg.warmup + cfg.duration + 40)
            if "rate" in res and res.get("count", 0) == 0:
                res["error"] = res.get("first_error") or "no replies"
        if not server.alive():
            res["error"] = (res.get("error") or "") + f" server died (log {server.logpath})"
        return res, None
    finally:
        server.stop()


def median(vals):
    vals = [v for v in vals if isinstance(v, (int, float)) and v >= 0]
    return round(statistics.median(vals), 2) if vals else None


def summarize(runs, kind):
    keys = ["rate", "p50_us", "p99_us"] if kind in ("echo", "http") else ["rate", "p50_us"] if kind == "churn" else [
        "kib_per_socket", "rss_baseline_kib", "rss_idle_kib"]
    keys += ["gen_cpu", "server_cpu", "machine_busy_cores"] if kind != "idle" else []
    good = [r for r in runs if not r.get("error")]
    med = {k: median([r.get(k) for r in good]) for k in keys}
    med["runs_ok"] = len(good)
    med["runs"] = len(runs)
    return med


# --- environment ---------------------------------------------------------------------


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def cmd_out(argv, timeout=30):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


def peer_versions():
    """Versions of the peers' packages in bench's venv, and of Node and its ws (None: missing)."""
    mods = ["aiohttp", "websockets", "uvloop", "picows"]
    out = cmd_out([BENCH_PYTHON, "-c", "import json, importlib.metadata as m\n"
                   "v = {}\n"
                   f"for n in {mods!r}:\n"
                   "    try:\n        __import__(n); v[n] = m.version(n)\n"
                   "    except Exception:\n        v[n] = None\n"
                   "print(json.dumps(v))"])
    try:
        vers = json.loads(out)
    except (TypeError, ValueError):
        vers = dict.fromkeys(mods)
    node = shutil.which("node")
    vers["node"] = cmd_out([node, "--version"]) if node else None
    try:
        vers["ws"] = json.loads(NODE_WS_MODULE.read_text())["version"]
    except (OSError, ValueError, KeyError):
        vers["ws"] = None
    return vers


def server_version(name, env):
    """What a server's figures depend on, as one string for the results."""
    p = env.get("peers", {})
    return {
        "cecho": f"{env.get('gcc') or 'gcc'} -O2",
        "reference": f"Autobahn {env.get('autobahn')}, Twisted {env.get('twisted')}, Python {env.get('python')}",
        "dotwist-seed": f"dotwist {env.get('git_head')}, Twisted {env.get('twisted')}, Python {env.get('python')}",
        "dotwist-seed-epoll": f"dotwist {env.get('git_head')}, Twisted {env.get('twisted')}, epoll reactor",
        "dotwist-seed-uvloop": f"dotwist {env.get('git_head')}, Twisted {env.get('twisted')}, uvloop",
        "dotwist-echo": f"dotwist {env.get('git_head')}, Twisted {env.get('twisted')}, Python {env.get('python')}",
        "workerd-seed": env.get("workerd") or "workerd: not installed",
        "aiohttp": f"aiohttp {p.get('aiohttp')}, uvloop {p.get('uvloop')}, Python {env.get('bench_python')}",
        "websockets": f"websockets {p.get('websockets')}, uvloop {p.get('uvloop')}, Python {env.get('bench_python')}",
        "picows": f"picows {p.get('picows')}, uvloop {p.get('uvloop')}, Python {env.get('bench_python')}",
        "node-ws": f"ws {p.get('ws')}, Node {p.get('node')}",
    }.get(name, "?")


def environment():
    py = project_python()
    vers = cmd_out(
        [py, "-c", "import json,sys,twisted,autobahn;print(json.dumps({'python':sys.version.split()[0],"
         "'twisted':twisted.__version__,'autobahn':autobahn.__version__}))"]
    )
    try:
        vers = json.loads(vers)
    except (TypeError, ValueError):
        vers = {}
    dotwist_v = cmd_out([py, "-c", "import dotwist;print(getattr(dotwist,'__version__','?'))"])
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = line.split(":")[1].strip()
    except OSError:
        pass
    git = cmd_out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = cmd_out(["git", "-C", str(REPO), "status", "--porcelain", "--", "dotwist"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "uname": cmd_out(["uname", "-a"]),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "mem_total": mem,
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "python": vers.get("python"),
        "twisted": vers.get("twisted"),
        "autobahn": vers.get("autobahn"),
        "dotwist": dotwist_v,
        "git_head": git,
        "dotwist_worktree_dirty": bool(dirty),
        "workerd": cmd_out([str(WORKERD), "--version"]) if WORKERD.exists() else None,
        "gcc": (cmd_out(["gcc", "--version"]) or "").split("\n")[0] or None,
        "bench_python": sys.version.split()[0],
    }


# --- build ----------------------------------------------------------------------------


def build():
    BUILD.mkdir(exist_ok=True)
    for src, out in ((HERE / "wsload.c", WSLOAD), (HERE / "wsecho.c", WSECHO)):
        if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
            log(f"building {out.relative_to(REPO)} (gcc -O2)")
            subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(src)], check=True)


# --- output ---------------------------------------------------------------------------


def fmt_num(v, digits=0):
    if v is None:
        return "—"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def compact(v):
    if v >= 100000:
        return f"{v / 1000:.0f}k"
    if v >= 10000:
        return f"{v / 1000:.1f}k"
    if v >= 1000:
        return f"{v / 1000:.2f}k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}"


def fmt_lat(v):
    if v is None:
        return "—"
    if v >= 10000:
        return f"{v / 1000:,.0f} ms"
    if v >= 1000:
        return f"{v / 1000:,.1f} ms"
    return f"{v:,.0f} µs"


def markdown(data):
    names = [n for n in data["servers_run"] if data["servers"][n]["status"] == "ok"]
    ref = data["reference"]
    L = []
    L.append("| figure | " + " | ".join(data["servers"][n]["label"] for n in names) + " |")
    L.append("|---|" + "---:|" * len(names))
    for fig in data["figures"]:
        fid = fig["id"]

        def cell(n, key, fmt, spread=False):
            f = data["servers"][n]["figures"].get(fid)
            if not f or f.get("skipped"):
                return "n/a"
            text = fmt(f["median"].get(key))
            vals = [r[key] for r in f.get("runs", []) if not r.get("error") and isinstance(r.get(key), (int, float))]
            if spread and len(vals) > 1 and f["median"].get(key) is not None:
                text += f" ({compact(min(vals))}–{compact(max(vals))})"
            return text

        if all(not data["servers"][n]["figures"].get(fid) or data["servers"][n]["figures"][fid].get("skipped")
               for n in names):
            continue  # no server ran this figure
        if fig["kind"] == "idle":
            L.append(f"| {fig['title']} ({fig['unit']}, {data['config']['idle_sockets']} sockets) | "
                     + " | ".join(cell(n, "kib_per_socket", lambda v: fmt_num(v, 1), True) for n in names) + " |")
            continue
        L.append(f"| {fig['title']} ({fig['unit']}) | "
                 + " | ".join(cell(n, "rate", fmt_num, True) for n in names) + " |")
        if fig["kind"] in ("echo", "http"):
            L.append(f"| &nbsp;&nbsp;latency p50 / p99 | "
                     + " | ".join(
                         cell(n, "p50_us", lambda v: "—") if cell(n, "p50_us", fmt_lat) in ("n/a", "—")
                         else f"{cell(n, 'p50_us', fmt_lat)} / {cell(n, 'p99_us', fmt_lat)}"
                         for n in names) + " |")
    bg = []
    for n in names:
        vals = []
        for f in data["servers"][n]["figures"].values():
            for r in f.get("runs", []):
                if r.get("machine_busy_cores", -1) >= 0 and r.get("gen_cpu", -1) >= 0 and r.get("server_cpu", -1) >= 0:
                    vals.append(r["machine_busy_cores"] - r["gen_cpu"] - r["server_cpu"])
        bg.append(fmt_num(statistics.median(vals), 2) if vals else "—")
    L.append("| other load on the machine during the windows (cores, median; noise) | " + " | ".join(bg) + " |")
    table = "\n".join(L)

    R = []
    rnames = [n for n in names if n != ref]
    if ref in names and rnames:
        R.append("| figure (ratio to reference, higher is better except RSS) | "
                 + " | ".join(data["servers"][n]["label"] for n in rnames) + " |")
        R.append("|---|" + "---:|" * len(rnames))
        for fig in data["figures"]:
            key = PRIMARY[fig["kind"]]
            cells = []
            for n in rnames:
                r = data["ratios_to_reference"].get(n, {}).get(fig["id"], {}).get(key)
                cells.append("n/a" if r is None else f"{r:.2f}×")
            refm = (data["servers"][ref]["figures"].get(fig["id"]) or {}).get("median")
            if not refm or refm.get(key) is None:
                continue  # the reference has no such figure (e.g. no HTTP endpoint)
            R.append(f"| {fig['title']} ({fig['unit']}) | " + " | ".join(cells) + " |")
    C = []
    if "cecho" in names:
        others = [n for n in names if n != "cecho"]
        C.append("| figure | wsload vs C echo server | wsload CPU there (cores) | wsload CPU per request "
                 "| at a full core | fastest server under test | headroom | wsload CPU against it (cores) |")
        C.append("|---|---:|---:|---:|---:|---|---:|---:|")
        for fig in data["figures"]:
            if fig["kind"] == "idle":
                continue
            ce = (data["servers"]["cecho"]["figures"].get(fig["id"]) or {}).get("median") or {}
            best, bestn = None, None
            for n in others:
                m = (data["servers"][n]["figures"].get(fig["id"]) or {}).get("median") or {}
                if m.get("rate") and (best is None or m["rate"] > best["rate"]):
                    best, bestn = m, n
            if not ce.get("rate"):
                continue
            g = ce.get("gen_cpu")
            per = f"{g / ce['rate'] * 1e6:.1f} µs" if g else "—"
            full = fmt_num(ce["rate"] / g) if g else "—"
            head = f"| {fig['title']} ({fig['unit']}) | {fmt_num(ce['rate'])} | {fmt_num(g, 2)} | {per} | {full} "
            if best:
                C.append(head + f"| {data['servers'][bestn]['label']}: {fmt_num(best['rate'])} | "
                         f"{ce['rate'] / best['rate']:.1f}× | {fmt_num(best.get('gen_cpu'), 2)} |")
            else:
                C.append(head + "| — | — | — |")
    return table, "\n".join(R), "\n".join(C)


def seed_table(data, seed="dotwist-seed"):
    """dotwist seed's median over every other server's, figure by figure (same run)."""
    names = [n for n in data["servers_run"] if data["servers"][n]["status"] == "ok" and n not in (seed, "cecho")]
    if seed not in data["servers_run"] or data["servers"][seed]["status"] != "ok" or not names:
        return ""
    L = ["| figure (dotwist seed / server) | " + " | ".join(data["servers"][n]["label"] for n in names) + " |",
         "|---|" + "---:|" * len(names)]
    for fig in data["figures"]:
        key = PRIMARY[fig["kind"]]
        a = ((data["servers"][seed]["figures"].get(fig["id"]) or {}).get("median") or {}).get(key)
        if a is None:
            continue
        cells = []
        for n in names:
            b = ((data["servers"][n]["figures"].get(fig["id"]) or {}).get("median") or {}).get(key)
            cells.append(f"{a / b:.2f}×" if b else "n/a")
        L.append(f"| {fig['title']} ({fig['unit']}) | " + " | ".join(cells) + " |")
    return "\n".join(L)


def plot(data, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not available: no plot")
        return False
    echo_figs = [f for f in data["figures"] if f["kind"] == "echo" and not f.get("binary")]
    if not echo_figs:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, n in enumerate(data["servers_run"]):
        s = data["servers"][n]
        if s["status"] != "ok":
            continue
        xs, rate, p50, p99 = [], [], [], []
        for f in echo_figs:
            m = s["figures"].get(f["id"], {}).get("median") or {}
            if m.get("rate"):
                xs.append(f["conns"])
                rate.append(m["rate"])
                p50.append(m.get("p50_us") or float("nan"))
                p99.append(m.get("p99_us") or float("nan"))
        if not xs:
            continue
        c = colors[i % len(colors)]
        style = ":" if s.get("ceiling") else "-"
        ax1.plot(xs, rate, style, marker="o", color=c, label=s["label"])
        ax2.plot(xs, [v / 1000 for v in p50], style, marker="o", color=c, label=f"{s['label']} p50")
        ax2.plot(xs, [v / 1000 for v in p99], "--", marker="x", color=c, alpha=0.6, label=f"{s['label']} p99")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks([f["conns"] for f in echo_figs], [str(f["conns"]) for f in echo_figs])
        ax.set_yscale("log")
        ax.set_xlabel("concurrent connections (closed loop, 32 B text)")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_ylabel("messages / s (median)")
    ax1.set_title("Echo throughput")
    ax2.set_ylabel("latency, ms (median of runs)")
    ax2.set_title("Echo latency: p50 (solid) and p99 (dashed)")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=6, ncol=2)
    env = data["environment"]
    other = []
    for s in data["servers"].values():
        for f in s["figures"].values():
            for r in f.get("runs", []):
                if r.get("machine_busy_cores", -1) >= 0 and r.get("gen_cpu", -1) >= 0 and r.get("server_cpu", -1) >= 0:
                    other.append(r["machine_busy_cores"] - r["gen_cpu"] - r["server_cpu"])
    noise = f"; other load on the machine: median {statistics.median(other):.2f} cores (noisy)" if other else ""
    fig.suptitle(
        f"dotwist bench, {env['date'][:10]}: server on core {data['config'].get('server_core', SERVER_CORE)}, "
        f"wsload on core {data['config'].get('load_core', LOAD_CORE)}; {data['config']['repeats']} repeat(s), "
        f"{data['config']['warmup']} s warm-up + {data['config']['duration']} s windows; {env['cpu_model']}{noise}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- main -----------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", help="comma-separated subset of: " + ",".join(SERVER_ORDER)
                    + "; or groups: " + ", ".join(f"{g} ({','.join(m)})" for g, m in SERVER_GROUPS.items()))
    ap.add_argument("--figures", help="comma-separated subset of: " + ",".join(f["id"] for f in FIGURES))
    ap.add_argument("--quick", action="store_true", help="short windows (0.5 s + 1.5 s), 1 repeat, 2000 idle sockets")
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--warmup", type=float, help="seconds of warm-up before each measured window (default 1.5)")
    ap.add_argument("--duration", type=float, help="measured seconds per figure (default 4)")
    ap.add_argument("--idle-sockets", type=int)
    ap.add_argument("--out", default=str(RESULTS / "latest"), help="output path without suffix (default results/latest)")
    ap.add_argument("--inprocess", help="comma-separated subset of: " + ",".join(b["id"] for b in INPROCESS)
                    + ", or none (default: all of them, unless --servers or --figures is given)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--render", metavar="JSON", help="only re-make the tables and plot from a saved JSON (no measuring)")
    args = ap.parse_args()

    if args.render:
        data = json.loads(Path(args.render).read_text())
        write_outputs(data, Path(args.out) if args.out != str(RESULTS / "latest") else Path(args.render).with_suffix(""))
        return 0

    if args.list:
        for n in SERVER_ORDER:
            log(f"{n:14} {SERVERS[n]['label']}: {SERVERS[n]['note']}")
        for f in FIGURES:
            log(f"{f['id']:14} {f['title']} ({f['unit']})")
        for b in INPROCESS:
            log(f"{b['id']:14} in-process: {b['title']} (bench/{b['script']})")
        return 0

    class Cfg:
        pass

    cfg = Cfg()
    cfg.repeats = args.repeats or (1 if args.quick else 3)
    cfg.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.5)
    cfg.duration = args.duration or (1.5 if args.quick else 4.0)
    cfg.idle_sockets = args.idle_sockets or (2000 if args.quick else 5000)
    cfg.connect_timeout = 60
    cfg.idle_connect_timeout = 90
    cfg.start_timeout = 30

    names = []
    for n in (SERVER_ORDER if not args.servers else [s.strip() for s in args.servers.split(",") if s.strip()]):
        for m in SERVER_GROUPS.get(n, [n]):
            if m not in SERVERS:
                ap.error(f"unknown server {m!r}; known: {', '.join(SERVER_ORDER)}; groups: {', '.join(SERVER_GROUPS)}")
            if m not in names:
                names.append(m)
    figures = FIGURES
    if args.figures:
        want = [s.strip() for s in args.figures.split(",") if s.strip() != "none"]
        figures = [f for f in FIGURES if f["id"] in want]
        if len(figures) != len(want):
            ap.error(f"unknown figure in {want}")
    figures = [dict(f, conns=cfg.idle_sockets) if f["kind"] == "idle" else f for f in figures]
    if not figures:  # --figures none: only the in-process benchmarks
        names = []
    asked = {f["id"] for f in figures} if args.figures else set()
    known = [b["id"] for b in INPROCESS]
    if args.inprocess is None:
        inprocess = [] if (args.servers or args.figures) else known
    else:
        inprocess = [x.strip() for x in args.inprocess.split(",") if x.strip() and x.strip() != "none"]
        unknown = [x for x in inprocess if x not in known]
        if unknown:
            ap.error(f"unknown in-process benchmark {unknown}; known: {', '.join(known)}")

    if (os.cpu_count() or 1) < 2:
        log("warning: fewer than 2 CPUs; server and generator share a core")
    build()
    env = environment()
    peerVersions = peer_versions()
    env["peers"] = peerVersions
    log(f"bench: {env['cpu_model']} x{env['cpus']}, {env['uname']}")
    log(f"bench: python {env['python']}, twisted {env['twisted']}, autobahn {env['autobahn']}, "
        f"{env['workerd'] or 'workerd: not installed'}, load average {' '.join(env['loadavg_at_start'])}")
    log("bench: peers " + ", ".join(f"{k} {v}" for k, v in peerVersions.items() if v))
    log(f"bench: servers {', '.join(names)}; {cfg.repeats} repeat(s), {cfg.warmup} s warm-up + "
        f"{cfg.duration} s measured per figure; server on core {SERVER_CORE}, wsload on core {LOAD_CORE}")

    servers = {}
    for n in names:
        spec = SERVERS[n]
        servers[n] = {
            "label": spec["label"],
            "note": spec["note"],
            "ceiling": bool(spec.get("ceiling")),
            "command": "taskset -c " + SERVER_CORE + " " + shlex.join(spec["cmd"]("PORT")),
            "ws_path": spec["ws"],
            "http_path": spec["http"],
            "status": "ok",
            "figures": {},
        }
        if n == "workerd-seed" and not WORKERD.exists():
            servers[n]["status"] = "skipped: workerd binary missing (npm install in bench/workerd failed?)"
        if spec["cmd"]("PORT")[0] == project_python() and not os.path.exists(project_python()):
            servers[n]["status"] = f"skipped: {project_python()} missing (project venv)"
        missing = [m for m in spec.get("requires", ()) if not peerVersions.get(m)]
        if missing:
            servers[n]["status"] = f"skipped: {', '.join(missing)} not installed in bench/.venv (requirements.txt)"
        if n == "node-ws" and not (peerVersions.get("node") and peerVersions.get("ws")):
            servers[n]["status"] = "skipped: node or ws missing (npm ci in bench/peers/node failed?)"
        servers[n]["version"] = server_version(n, env)

    raw = {n: {f["id"]: [] for f in figures} for n in names}
    t0 = time.monotonic()
    # Figure by figure, every server in turn (reference, dotwist, workerd, ...), so that the servers
    # compared in one figure are measured within the same minute: this VM's speed drifts by tens of
    # percent over minutes, and running one server's whole set before the next's put that drift
    # into the ratios.
    for rep in range(cfg.repeats):
        for fig in figures:
            for n in names:
                s = servers[n]
                if s["status"] != "ok":
                    if rep == 0 and fig is figures[0]:
                        log(f"[{n}] {s['status']}")
                    continue
                if s.get("problem"):
                    continue
                if fig["kind"] == "http" and not SERVERS[n]["http"]:
                    s["figures"][fig["id"]] = {"skipped": "no HTTP endpoint"}
                    continue
                if "figures" in SERVERS[n] and fig["id"] not in SERVERS[n]["figures"] and fig["id"] not in asked:
                    s["figures"][fig["id"]] = {"skipped": "not in this server's default figures (ask with --figures)"}
                    continue
                res, err = run_figure(n, SERVERS[n], fig, cfg, rep)
                if err:
                    if any(raw[n].values()):
                        # it ran before: keep what was measured, stop running it
                        s["problem"] = f"did not start in repeat {rep + 1} ({fig['id']}): {err.splitlines()[0]}"
                        log(f"[{n}] STOPPED: server did not start in repeat {rep + 1}: {err}")
                    else:
                        s["status"] = f"skipped: server did not start: {err.splitlines()[0]}"
                        log(f"[{n}] SKIPPED: server did not start: {err}")
                    continue
                # (churn and http_close_10 close their connections all the time)
                if (
                    fig["kind"] not in ("idle", "churn")
                    and not fig.get("close")
                    and res.get("open_at_end", fig["conns"]) < fig["conns"]
                ):
                    res["warning"] = f"only {res.get('open_at_end')} of {fig['conns']} connections open at the end"
                raw[n][fig["id"]].append(res)
                if res.get("error"):
                    desc = f"ERROR {res['error']}"
                elif fig["kind"] == "idle":
                    desc = (f"{res['kib_per_socket']} KiB/socket (RSS {res['rss_baseline_kib']} -> "
                            f"{res['rss_idle_kib']} KiB, {res['sockets_held']} sockets)")
                else:
                    desc = f"{res['rate']:,.0f} {fig['unit']}"
                    if "p50_us" in res and fig["kind"] != "churn":
                        desc += f", p50 {res['p50_us']:.0f} µs, p99 {res['p99_us']:.0f} µs"
                    desc += f" (server cpu {res.get('server_cpu', -1):.2f}, wsload cpu {res.get('gen_cpu', -1):.2f})"
                    if res.get("errors"):
                        desc += f" [{res['errors']} errors: {res.get('first_error')}]"
                if res.get("warning"):
                    desc += f" WARNING: {res['warning']}"
                log(f"[{n}] rep {rep + 1}/{cfg.repeats} {fig['id']:14} {desc}")
        log(f"bench: repeat {rep + 1} done after {time.monotonic() - t0:.0f} s")

    for n in names:
        for fig in figures:
            runs = raw[n][fig["id"]]
            if runs:
                servers[n]["figures"][fig["id"]] = {"median": summarize(runs, fig["kind"]), "runs": runs}

    ref = "reference"
    ratios = {}
    if ref in servers and servers[ref]["status"] == "ok":
        for n in names:
            if n == ref or servers[n]["status"] != "ok":
                continue
            ratios[n] = {}
            for fig in figures:
                a = servers[n]["figures"].get(fig["id"], {}).get("median")
                b = servers[ref]["figures"].get(fig["id"], {}).get("median")
                if not a or not b:
                    continue
                r = {}
                for k in ("rate", "p50_us", "p99_us", "kib_per_socket"):
                    if a.get(k) is not None and b.get(k):
                        r[k] = round(a[k] / b[k], 3)
                ratios[n][fig["id"]] = r

    data = {
        "environment": env,
        "config": {
            "repeats": cfg.repeats,
            "warmup": cfg.warmup,
            "duration": cfg.duration,
            "idle_sockets": cfg.idle_sockets,
            "server_core": SERVER_CORE,
            "load_core": LOAD_CORE,
            "command": "bench/run " + " ".join(sys.argv[1:]),
            "elapsed_s": round(time.monotonic() - t0),
        },
        "notes": [
            "Medians over the repeats; each figure runs against a freshly started server.",
            "rate = replies (echo: one reply message per request), completed connections (churn) "
            "or responses (http) per second in the measured window; latency = send to reply, per request.",
            "kib_per_socket = (VmRSS holding the idle sockets - VmRSS after a 10-connection warm-up) / sockets held.",
            "gen_cpu / server_cpu = CPU seconds per second of the load generator / server in the window; "
            "machine_busy_cores = the whole machine's, so anything above gen+server is other load (noise).",
            "The dotwist seed and workerd seed reply '[Durable Object]: <msg>' (longer than the request); "
            "for binary messages the seed replies with a text frame (the stringified data). One reply counts.",
        ],
        "reference": ref,
        "servers_run": names,
        "figures": figures,
        "servers": servers,
        "ratios_to_reference": ratios,
    }
    ceiling = {}
    if "cecho" in servers and servers["cecho"]["status"] == "ok":
        for fid, f in servers["cecho"]["figures"].items():
            if "median" in f:
                ceiling[fid] = {k: f["median"].get(k) for k in ("rate", "p50_us", "p99_us", "gen_cpu", "server_cpu",
                                                                 "kib_per_socket")
                                if f["median"].get(k) is not None}
    data["generator_ceiling"] = ceiling
    if inprocess:
        # After the servers, so that they had the machine to themselves.
        data["inprocess"] = run_inprocess(inprocess, args.quick)
        data["config"]["elapsed_s"] = round(time.monotonic() - t0)
    write_outputs(data, Path(args.out))
    log(f"bench: done in {time.monotonic() - t0:.0f} s")
    return 0


def write_outputs(data, out):
    """Tables (markdown), JSON and plot from the collected data; also used by --render."""
    env, cfg, servers = data["environment"], data["config"], data["servers"]
    table, rtable, ctable = markdown(data)
    data["table_markdown"] = table
    data["ratio_table_markdown"] = rtable
    data["ceiling_table_markdown"] = ctable
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    has_plot = plot(data, out.with_suffix(".png"))
    md = [f"Measured {env['date']} on {env['cpu_model']} ({env['cpus']} CPUs, {env['mem_total']}), "
          f"`{env['uname']}`; Python {env['python']}, Twisted {env['twisted']}, Autobahn {env['autobahn']}, "
          f"{env['workerd'] or 'workerd: not installed'}; git HEAD {env.get('git_head')}"
          f"{' (dotwist/ had uncommitted changes)' if env.get('dotwist_worktree_dirty') else ''}. "
          f"Command: `{cfg['command'].strip()}` ({cfg['repeats']} repeat(s), {cfg['warmup']} s warm-up + "
          f"{cfg['duration']} s measured per figure; median, with the range over the repeats in brackets).",
          "", table, ""]
    versions = [f"{servers[n]['label']}: {servers[n].get('version', '?')}" for n in data["servers_run"]
                if servers[n]["status"] == "ok"]
    md[0] += " Servers: " + "; ".join(versions) + "."
    if not data["servers_run"]:  # --figures none: the in-process benchmarks only
        md = [md[0].replace(" Servers: .", " No servers (in-process benchmarks only)."), ""]
    if rtable:
        md += ["Ratios to the reference (medians):", "", rtable, ""]
    stable = seed_table(data)
    if stable:
        md += ["The dotwist seed against each server (seed median / that server's median; above 1 the seed is "
               "faster, except RSS where above 1 means more memory):", "", stable, ""]
    if ctable:
        md += ["Load generator ceiling (wsload against bench/wsecho.c, a minimal C epoll echo server, same pinning; "
               "'at a full core' = rate / wsload CPU, what wsload could drive if it were CPU-bound):", "", ctable, ""]
    skipped = [f"- {servers[n]['label']}: {servers[n]['status']}" for n in data["servers_run"]
               if servers[n]["status"] != "ok"]
    skipped += [f"- {servers[n]['label']}: {servers[n]['problem']}" for n in data["servers_run"]
                if servers[n].get("problem")]
    warns = sorted({f"- {servers[n]['label']}, {fid}: {r['warning']}" for n in data["servers_run"]
                    for fid, f in servers[n]["figures"].items() for r in f.get("runs", []) if r.get("warning")})
    errs = sorted({f"- {servers[n]['label']}, {fid}: {r['error']}" for n in data["servers_run"]
                   for fid, f in servers[n]["figures"].items() for r in f.get("runs", []) if r.get("error")})
    if skipped:
        md += ["Not measured (or not fully):", *skipped, ""]
    if errs or warns:
        md += ["Runs with errors (left out of the medians) or warnings:", *errs, *warns, ""]
    for bid, entry in data.get("inprocess", {}).items():
        md += [f"In-process: {entry['title']} (`{entry['command']}`, {entry.get('elapsed_s', '?')} s):", ""]
        if entry["status"] != "ok":
            md += [f"Not measured (or not fully): {entry['status']}", ""]
        if entry.get("report"):
            md += [entry["report"], ""]
    out.with_suffix(".md").write_text("\n".join(md))
    log("")
    log("\n".join(md))
    log(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')}" + (f", {out.with_suffix('.png')}" if has_plot else ""))

if __name__ == "__main__":
    sys.exit(main())
