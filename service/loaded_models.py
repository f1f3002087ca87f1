"""The model versions this process serves, and where requests go.

For each served model the routing table holds its aliases and the version a request naming
only the model gets (the `stable` alias, else the newest version). Every routed version is
loaded: its files verified against the manifest, its runtime created and warmed up on every
batch shape in `warmup_batch_sizes`, its batcher started; only then does traffic move to it.
A version that loses its last route drains (its requests in flight finish) and is freed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from model_store import Manifest, ModelStore
from model_store.store import DEFAULT_ALIAS
from service.batching import Batcher
from service.errors import Conflict, ModelNotLoaded, NotReady
from service.metrics import ServiceMetrics
from service.runtimes import Runtime, RuntimeOptions, load_runtime

logger = logging.getLogger("actserve.models")


@dataclass(frozen=True)
class ServingOptions:
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    max_batch_views: int = 32
    max_delay_s: float = 0.005
    max_queue_views: int = 512
    warmup_batch_sizes: tuple[int, ...] = (1,)
    drain_timeout_s: float = 30.0


@dataclass(eq=False)
class LoadedModel:
    manifest: Manifest
    runtime: Runtime
    batcher: Batcher
    load_seconds: float
    state: str = "loaded"
    active: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def key(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"

    @contextmanager
    def lease(self) -> Iterator[LoadedModel]:
        """Hold the version for one request; draining waits for every lease to end."""
        self.active += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self.active -= 1
            if not self.active:
                self._idle.set()

    async def drain_and_close(self, timeout: float) -> None:
        self.state = "draining"
        if self.active:
            try:
                async with asyncio.timeout(timeout):
                    await self._idle.wait()
            except TimeoutError:
                logger.warning(
                    "%s: %d requests still running after %.0f s; closing anyway",
                    self.key,
                    self.active,
                    timeout,
                )
        await self.batcher.close(timeout)
        await asyncio.to_thread(self.runtime.close)
        self.state = "closed"


@dataclass
class Route:
    aliases: dict[str, int]
    default_version: int

    def versions(self) -> set[int]:
        return {self.default_version, *self.aliases.values()}


class LoadedModels:
    def __init__(self, store: ModelStore, options: ServingOptions, metrics: ServiceMetrics) -> None:
        self.store = store
        self.options = options
        self.metrics = metrics
        self.default_model: str | None = None
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._draining: dict[tuple[str, int], LoadedModel] = {}
        self._routes: dict[str, Route] = {}
        self._pinned: set[tuple[str, int]] = set()
        self._admin = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ requests

    def resolve(
        self, name: str | None = None, version: int | None = None, alias: str | None = None
    ) -> LoadedModel:
        """The loaded version a request asks for (404 for anything not served)."""
        name = name or self.default_model
        if name is None:
            raise NotReady("no default model: set ACTSERVE_DEFAULT_MODEL or name a model")
        route = self._routes.get(name)
        if route is None:
            served = ", ".join(sorted(self._routes)) or "none"
            where = (
                "is in the store but not loaded"
                if name in self.store.list_models()
                else "does not exist"
            )
            raise ModelNotLoaded(f"model {name!r} {where} (served models: {served})")
        if version is not None and alias is not None:
            raise Conflict("give a version or an alias, not both")
        if alias is not None:
            if alias not in route.aliases:
                known = ", ".join(route.aliases) or "none"
                raise ModelNotLoaded(f"model {name!r} has no alias {alias!r} (aliases: {known})")
            version = route.aliases[alias]
        version = version if version is not None else route.default_version
        loaded = self._loaded.get((name, version))
        if loaded is None or loaded.state != "loaded":
            served = ", ".join(str(v) for n, v in self._loaded if n == name)
            raise ModelNotLoaded(
                f"version {version} of {name!r} is not loaded (loaded versions: {served})"
            )
        return loaded

    def ready(self) -> bool:
        if self.default_model is None:
            return False
        try:
            self.resolve()
        except (NotReady, ModelNotLoaded):
            return False
        return True

    def loaded(self) -> list[LoadedModel]:
        return [m for m in self._loaded.values() if m.state == "loaded"]

    def routes(self) -> dict[str, Route]:
        return dict(self._routes)

    def state_of(self, name: str, version: int) -> LoadedModel | None:
        """The loaded or draining version, or None."""
        return self._loaded.get((name, version)) or self._draining.get((name, version))

    # ------------------------------------------------------------------ lifecycle

    async def start(self, default_model: str | None, preload: list[str]) -> None:
        """Serve the default model and the preloaded ones ('*' = every model in the store)."""
        self.default_model = default_model or self.store.default_model()
        names = list(preload)
        if "*" in names:
            names = self.store.list_models()
        if self.default_model is not None:
            names.insert(0, self.default_model)
        async with self._admin:
            for name in dict.fromkeys(names):
                await self._serve(name)

    async def close(self) -> None:
        async with self._admin:
            self._routes.clear()
            await self._retire_unrouted()
            await asyncio.gather(*self._retiring, return_exceptions=True)

    # ------------------------------------------------------------------ admin

    async def load(self, name: str, version: int) -> LoadedModel:
        """Load (and keep loaded) a version that no route needs, e.g. to test it by number."""
        async with self._admin:
            self._pinned.add((name, version))
            if name not in self._routes:
                await self._serve(name)
            return await self._ensure_loaded(name, version)

    async def unload(self, name: str, version: int) -> None:
        async with self._admin:
            route = self._routes.get(name)
            if route is not None and version in route.versions():
                raise Conflict(
                    f"{name} version {version} is routed (default or alias target); promote "
                    "another version first"
                )
            if (name, version) not in self._loaded:
                raise ModelNotLoaded(f"version {version} of {name!r} is not loaded")
            self._pinned.discard((name, version))
            await self._retire_unrouted()

    async def promote(self, name: str, version: int, alias: str = DEFAULT_ALIAS) -> None:
        """Load and warm `version`, then point `alias` at it; the previous target drains."""
        async with self._admin:
            self.store.read_manifest(name, version)
            await self._ensure_loaded(name, version)
            self.store.promote(name, version, alias)
            await self._refresh(name)

    async def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> int:
        """Point `alias` back at its previous target, loaded and warmed before the switch."""
        async with self._admin:
            state = self.store.aliases(name).get(alias)
            existing = set(self.store.list_versions(name))
            previous = [v for v in (state.history if state else []) if v in existing]
            if previous:
                await self._ensure_loaded(name, previous[-1])
            version = self.store.rollback(name, alias).version
            await self._refresh(name)
            return version

    async def reload(self) -> None:
        """Re-read the store (aliases moved by `actserve models`, new versions) for every
        served model."""
        async with self._admin:
            for name in list(self._routes):
                await self._refresh(name)

    # ------------------------------------------------------------------ internals

    async def _serve(self, name: str) -> None:
        route = self._route_from_store(name)
        for version in sorted(route.versions()):
            await self._ensure_loaded(name, version)
        self._routes[name] = route

    async def _refresh(self, name: str) -> None:
        route = self._route_from_store(name)
        for version in sorted(route.versions()):
            await self._ensure_loaded(name, version)
        self._routes[name] = route  # traffic moves only now, to warmed versions
        await self._retire_unrouted()

    def _route_from_store(self, name: str) -> Route:
        aliases = {alias: state.version for alias, state in self.store.aliases(name).items()}
        default = self.store.resolve(name).version
        return Route(aliases=aliases, default_version=default)

    async def _ensure_loaded(self, name: str, version: int) -> LoadedModel:
        existing = self._loaded.get((name, version))
        if existing is not None and existing.state == "loaded":
            return existing
        started = time.perf_counter()
        manifest = await asyncio.to_thread(self.store.verify, name, version)
        directory = self.store.version_dir(name, version)
        runtime = await asyncio.to_thread(load_runtime, manifest, directory, self.options.runtime)
        await asyncio.to_thread(self._warm_up, runtime, manifest)
        batcher = Batcher(
            runtime,
            max_batch_views=self.options.max_batch_views,
            max_delay_s=self.options.max_delay_s,
            max_queue_views=self.options.max_queue_views,
            observer=self.metrics.batch_observer(name, version),
            name=f"{name}@{version}",
        )
        batcher.start()
        seconds = time.perf_counter() - started
        loaded = LoadedModel(manifest, runtime, batcher, seconds)
        loaded._idle.set()
        self._loaded[(name, version)] = loaded
        self.metrics.model_loaded.labels(
            name, str(version), manifest.backbone, runtime.description
        ).set(1)
        self.metrics.model_load_seconds.labels(name, str(version)).set(seconds)
        logger.info("loaded %s@%d in %.1f s: %s", name, version, seconds, runtime.description)
        return loaded

    def _warm_up(self, runtime: Runtime, manifest: Manifest) -> None:
        """Run every batch shape once: first calls allocate and plan; requests should not pay."""
        shape = manifest.spec.recipe.clip_shape
        for size in sorted(set(self.options.warmup_batch_sizes)):
            runtime.run(np.zeros((size, *shape), np.float32))

    async def _retire_unrouted(self) -> None:
        needed = {(n, v) for n, route in self._routes.items() for v in route.versions()}
        needed |= self._pinned
        for key, model in list(self._loaded.items()):
            if key in needed or model.state != "loaded":
                continue
            model.state = "draining"
            self._draining[key] = self._loaded.pop(key)
            self.metrics.model_loaded.remove(
                key[0], str(key[1]), model.manifest.backbone, model.runtime.description
            )
            task = asyncio.create_task(model.drain_and_close(self.options.drain_timeout_s))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            task.add_done_callback(lambda _, key=key: self._draining.pop(key, None))
            logger.info("%s no longer routed: draining %d requests", model.key, model.active)
