"""`facefuse serve`: one process, the WebUI at / and the REST API at /api/v1 (docs at /docs).

`create_app` builds it: the worker pool (and so every Fuser) once, the REST app from `api`,
the Gradio WebUI from `webui` mounted at /; both share the pool.

Binds 127.0.0.1:7860 unless told otherwise. Any other address needs an API key, taken from
--api-key, else FACEFUSE_API_KEY, else server.api_key; it is checked on every REST call
and asked for by the WebUI. Imported by the CLI on every run, so nothing heavy at the top.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket

from .commands import EXIT_OK, load_settings
from .config import Settings
from .errors import ConfigError

API_KEY_ENV = "FACEFUSE_API_KEY"
UI_CSS = ("#result img, #faces img {object-fit: contain;} footer {display: none !important;} "
          # the result column (webui.RESULT_COLUMN) stays in view while the controls scroll; "clip"
          # still clips but, unlike Gradio's "hidden", does not stop a child from sticking
          ".gradio-container {overflow: clip !important;} "
          ".facefuse-result {position: sticky; top: 8px; align-self: flex-start;} "
          # the before/after box as wide as its pictures, so the handle never leaves them
          "#compare .slider-wrap {width: fit-content; max-width: 100%; margin: 0 auto;} "
          "#compare .slider-wrap img {width: auto; max-width: 100%;}")


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="start the WebUI and the REST API (default http://127.0.0.1:7860)")
    p.add_argument("--host", help="address to bind (default server.host, 127.0.0.1); others need an API key")
    p.add_argument("--port", type=int, help="port (default server.port, 7860; 0 = any free port)")
    p.add_argument("--api-key", help=f"key clients must send in X-API-Key (default ${API_KEY_ENV}, then server.api_key)")
    p.add_argument("--workers", type=int, help="fusion worker threads (default server.workers; 0 = cores)")
    p.add_argument("--no-webui", action="store_true", help="REST API only (skips the ~5 s Gradio import)")
    p.add_argument("--config", help="a config.yaml (default ./config.yaml if present)")
    p.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if args.workers is not None:
        _assign(settings.server, "workers", args.workers)
    return serve(settings, host=args.host, port=args.port, api_key=args.api_key, webui=not args.no_webui)


def _assign(section, key: str, value) -> None:
    from pydantic import ValidationError

    try:
        setattr(section, key, value)
    except ValidationError as exc:
        raise ConfigError(f"server.{key}: {exc.errors()[0]['msg']}") from exc


def resolve_api_key(settings: Settings, api_key: str | None = None) -> str | None:
    """--api-key, else $FACEFUSE_API_KEY, else server.api_key; blank counts as none."""
    for key in (api_key, os.environ.get(API_KEY_ENV), settings.server.api_key):
        if key is not None and key.strip():
            return key.strip()
    return None


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback address."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_bind(host: str, api_key: str | None) -> None:
    if not is_loopback(host) and not api_key:
        raise ConfigError(f"server.api_key: binding {host} exposes the server beyond this machine; "
                          f"give it an API key (--api-key, {API_KEY_ENV} or server.api_key)")


def _is_any(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def browser_address(host: str, port: int) -> str:
    """An address a browser on this machine can open: 0.0.0.0 / :: are not, loopback is."""
    if _is_any(host):
        host = "127.0.0.1"
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}"


# WebSocket messages are not deflated: live frames are JPEG, which does not compress, and
# deflating one 640x480 frame each way cost about 2 ms of latency each (loopback, idle)
WS_DEFLATE = False


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before loading anything, so a taken port fails fast with one line."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"server.host: cannot resolve {host!r} ({exc.strerror})") from exc
    family, _, proto, _, addr = infos[0]
    # the protocol named (TCP), not 0: asyncio sets TCP_NODELAY only on sockets that say TCP,
    # and without it a reply's last segment waited for the client's delayed ACK (a live
    # frame's JPEG came 25-35 ms late on loopback)
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE and port:
            free = _free_port_after(family, addr, port)
            instead = f"--port {free}" if free else "--port N"
            raise ConfigError(f"server.port: port {port} on {host} is in use (another facefuse?); start on a free one: "
                              f"./run.sh {instead} (or facefuse serve {instead}; --port 0 takes any)") from exc
        raise ConfigError(f"server.port: cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _free_port_after(family, addr: tuple, port: int, tries: int = 50) -> int | None:
    """The first port after `port` that `addr`'s host can listen on now, to name in the message."""
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((addr[0], candidate, *addr[2:]))
                return candidate
            except OSError:
                continue
    return None


def serve(settings: Settings, host: str | None = None, port: int | None = None, api_key: str | None = None,
          webui: bool = True) -> int:
    """Load the models, build the app and serve until interrupted."""
    import logging

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    if not 0 <= port <= 65535:
        raise ConfigError(f"server.port: must be 1-65535 (or 0 for any free port), got {port}")
    key = resolve_api_key(settings, api_key)
    check_bind(host, key)
    sock = bind_socket(host, port)
    port = sock.getsockname()[1]
    import uvicorn

    from .video.live import stop_fusing_processes

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("facefuse").setLevel(logging.INFO)
    app = create_app(settings, api_key=key, webui=webui)
    base = browser_address(host, port)
    print(f"facefuse: {'WebUI ' + base + '/  ' if webui else ''}REST {base}/api/v1  docs {base}/docs"
          f"{'  (API key required)' if key else ''}"
          f"{'  (listening on all interfaces of this machine)' if _is_any(host) else ''}  Ctrl+C to stop",
          flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5, access_log=False,
                            ws_per_message_deflate=WS_DEFLATE)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        app.state.pool.shutdown()
        stop_fusing_processes()
    return EXIT_OK


def create_app(settings: Settings, pool=None, api_key: str | None = None, webui: bool = True):
    """The whole server: REST under /api/v1, OpenAPI at /docs, the WebUI at / (webui=True).

    The pool (and so every Fuser) is created here, once, unless one is passed in."""
    import hmac

    from .api import MB, create_rest_app
    from .service import FusionPool

    pool = pool or FusionPool(settings)
    app = create_rest_app(settings, pool, api_key)
    if not webui:
        @app.get("/", include_in_schema=False)
        async def no_webui() -> dict:
            return {"message": "facefuse REST API (started without the WebUI): see /docs", "docs": "/docs",
                    "api": "/api/v1"}

        return app
    import gradio as gr

    from .webui import build_ui
    from .webui_live import page_head

    auth = None if not api_key else (
        lambda _user, password: hmac.compare_digest(str(password).encode(), api_key.encode()))
    return gr.mount_gradio_app(
        app, build_ui(settings, pool, live=app.state.live), path="/", max_file_size=int(settings.server.max_upload_mb * MB),
        allowed_paths=[os.path.abspath(settings.output.dir)], show_error=True, footer_links=["api"], auth=auth,
        blocked_paths=[str(app.state.jobs.folder.resolve())],  # REST jobs' uploads and results: theirs, not the UI's
        auth_message="This server needs its API key: any user name, the key as password." if api_key else None,
        theme=gr.themes.Soft(), css=UI_CSS, head=page_head(),
    )
