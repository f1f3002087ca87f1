"""The service on a real uvicorn in a background thread of this process, on a free loopback
port: for notebooks, benchmarks and tests that need real sockets.

    with EmbeddedServer(Settings(store=path)) as server:
        httpx.post(f"{server.url}/classify", files={"video": open("clip.mp4", "rb")})

`EmbeddedServer(app=...)` serves another ASGI app the same way (a test's scripted server).
"""

from __future__ import annotations

import threading
import time

from starlette.types import ASGIApp

from service.app import create_app
from service.server import Server, server_config
from service.settings import Settings


class EmbeddedServer:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        app: ASGIApp | None = None,
        log_level: str = "warning",
    ) -> None:
        if (settings is None) == (app is None):
            raise ValueError("EmbeddedServer takes settings (for the service) or an app")
        settings = settings or Settings()  # for another app: the service's HTTP guards
        app = app or create_app(settings)
        config = server_config(
            app,
            settings.http,
            host="127.0.0.1",
            port=0,
            drain_timeout_s=settings.drain_timeout_s,
            log_level=log_level,
        )
        self.server = Server(config, settings.http)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> EmbeddedServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the embedded server stopped during start-up (see its log)")
            if time.monotonic() > deadline:
                raise TimeoutError("the embedded server did not start within 120 s")
            time.sleep(0.05)
        # Port 0 let the OS pick a free port; read which.
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=120)
