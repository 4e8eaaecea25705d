# workerd config for bench/run: the seed app (seed.js) with its Durable Object namespace,
# storage in memory. The listen address is overridden by bench/run with
#   workerd serve config.capnp --socket-addr http=127.0.0.1:PORT
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "main", worker = .seedWorker) ],
  sockets = [ (name = "http", address = "127.0.0.1:8787", http = (), service = "main") ],
);

const seedWorker :Workerd.Worker = (
  modules = [ (name = "seed.js", esModule = embed "seed.js") ],
  compatibilityDate = "2024-09-23",
  durableObjectNamespaces = [ (className = "WebSocketServer", uniqueKey = "dotwist-bench-websocket-server") ],
  durableObjectStorage = (inMemory = void),
  bindings = [ (name = "WEBSOCKET_SERVER", durableObjectNamespace = "WebSocketServer") ],
);
