"""Running Cloudflare's Python Workers unmodified: the compatibility names.

A Python Worker written for Cloudflare imports ``workers`` (Cloudflare's Python SDK), and a little
of the JavaScript interop Pyodide offers (``js``, ``pyodide.ffi``). dotwist provides those names
as compatibility names on its own objects, not as a second runtime:

- ``dotwist.compat.workers``: the SDK's names (``WorkerEntrypoint``, ``DurableObject``,
  ``Response``, ``FetchResponse``, ``Request``, ``fetch``, ``env``, ...), each dotwist's own
  class or function; the SDK's spellings of their methods (``status_text``, ``web_socket``,
  ``from_json``) live on dotwist's classes (``dotwist.compat.spellings``);
- ``dotwist.compat.js``: the JavaScript globals published Python Workers use
  (``WebSocketPair.new()``, ``Date.now()``, ``Response.new()``, ``Object``, ``JSON``, ``URL``,
  ``fetch``, ``console``, ``crypto``);
- ``dotwist.compat.pyodide`` and ``dotwist.compat.pyodide_ffi``: ``pyodide.ffi.to_js`` and its
  neighbours, identity-like, since dotwist's values are Python already.

They become importable as the top-level ``workers``, ``js`` and ``pyodide`` only for apps loaded
in compatibility mode (``twistd dotwist --config wrangler.jsonc``): ``dotwist.compat.finder``
appends an import finder after Python's own, so an installed package of the same name would win,
and refuses to start if one is installed. Nothing here is imported or installed by ``import
dotwist``.
"""
