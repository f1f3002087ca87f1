"""`actserve worker`: a process that runs jobs from the shared database and serves no HTTP,
so deployments scale job workers apart from the API replicas.

It starts the decode workers and the served models as the server does, claims jobs until it
is told to stop (SIGTERM or SIGINT: the jobs it runs go back to the queue, their chunks
kept), and can expose its metrics on a port of its own for Prometheus.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from service.jobs.service import Jobs
from service.jobs.serving import serving_without_http
from service.settings import Settings

logger = logging.getLogger("actserve.jobs")


async def run_worker(
    settings: Settings, *, once: bool = False, metrics_port: int | None = None
) -> int:
    """Run jobs until stopped (or, `once`, until the queue is empty); returns the jobs run
    to completion here when `once`, else 0."""
    async with serving_without_http(settings) as serving:
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=settings.host, registry=serving.registry)
        jobs = await Jobs.open(settings.jobs, serving)
        try:
            if once:
                return await jobs.runner.run_until_idle()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await jobs.start(run=True)
            logger.info("job worker %s: waiting for jobs", jobs.runner.owner)
            await stop.wait()
            logger.info("job worker %s: stopping", jobs.runner.owner)
            return 0
        finally:
            await jobs.close()
