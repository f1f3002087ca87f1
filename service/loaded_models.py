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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from model_store import Manifest, Modality, ModelStore, StoreError
from model_store.store import DEFAULT_ALIAS
from service.batching import Batcher, BatchingSettings
from service.errors import (
    BadRequest,
    Conflict,
    ModelLoadError,
    ModelNotLoaded,
    NotReady,
    VersionBroken,
)
from service.runtimes import Runtime, RuntimeOptions, load_runtime
from service.version_state import VersionState
from service.video.flow import require_opencv

if TYPE_CHECKING:
    from service.metrics import ServiceMetrics

logger = logging.getLogger("actserve.models")


@dataclass(eq=False)
class LoadedStream:
    """One network of a version, with a runtime and a batcher of its own."""

    modality: Modality
    runtime: Runtime
    batcher: Batcher


@dataclass(eq=False)
class LoadedModel:
    manifest: Manifest
    #: The version's networks: one, or a two-stream version's rgb and flow (in that order).
    streams: tuple[LoadedStream, ...]
    load_seconds: float
    state: VersionState = VersionState.LOADED
    active: int = 0

    def __post_init__(self) -> None:
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def key(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"

    @property
    def runtime_description(self) -> str:
        if len(self.streams) == 1:
            return self.streams[0].runtime.description
        return "; ".join(f"{s.modality}: {s.runtime.description}" for s in self.streams)

    @property
    def labels(self) -> tuple[str, str]:
        """The (model, version) labels of its metrics."""
        return self.manifest.name, str(self.manifest.version)

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
        self.state = VersionState.DRAINING
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
        for stream in self.streams:
            await stream.batcher.close(timeout)
            await asyncio.to_thread(stream.runtime.close)
        self.state = VersionState.CLOSED


@dataclass
class Route:
    aliases: dict[str, int]
    default_version: int

    def versions(self) -> set[int]:
        return {self.default_version, *self.aliases.values()}

    def why_routed(self, version: int) -> str | None:
        """What routes requests to `version` ("the default version", "alias 'canary'"), or
        None."""
        reasons = ["the default version"] if version == self.default_version else []
        reasons += [f"alias {a!r}" for a, v in sorted(self.aliases.items()) if v == version]
        return " and ".join(reasons) or None


@dataclass(frozen=True)
class VersionStatus:
    """One version as this process holds it, for `GET /models`."""

    state: VersionState
    runtime: str | None = None
    load_seconds: float | None = None
    #: Why a broken version failed to load.
    error: str | None = None


@dataclass(frozen=True)
class ServingSnapshot:
    """What this process serves, at one moment: routes and the versions it holds."""

    default_model: str | None
    routes: dict[str, Route]
    versions: dict[tuple[str, int], VersionStatus]
    #: Models this process was asked to serve whose routes the store cannot give.
    unroutable: dict[str, str]

    def broken(self) -> dict[str, str]:
        """Every version and model that failed to load, "name@version" or "name" → why."""
        found = {
            f"{name}@{version}": status.error or ""
            for (name, version), status in sorted(self.versions.items())
            if status.state == VersionState.BROKEN
        }
        return {**found, **self.unroutable}

    def status(self, name: str, version: int) -> VersionStatus:
        return self.versions.get((name, version), VersionStatus(VersionState.AVAILABLE))


class LoadedModels:
    """The served models: routing (name, version or alias → a loaded version) and the
    lifecycle of versions (load, warm up, drain, free)."""

    def __init__(
        self,
        store: ModelStore,
        metrics: ServiceMetrics,
        *,
        runtime: RuntimeOptions,
        batching: BatchingSettings,
        drain_timeout_s: float,
        upstream: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        #: Requests on their way to the batchers (`Batcher.upstream`).
        self.upstream = upstream
        self.metrics = metrics
        self.runtime_options = runtime
        self.batching = batching
        self.drain_timeout_s = drain_timeout_s
        self.default_model: str | None = None
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._draining: dict[tuple[str, int], LoadedModel] = {}
        self._routes: dict[str, Route] = {}
        self._pinned: set[tuple[str, int]] = set()
        #: Routed versions that failed to load, with why; retried on every refresh.
        self._broken: dict[tuple[str, int], str] = {}
        #: Models to serve whose routes the store cannot give (unreadable alias file, ...).
        self._unroutable: dict[str, str] = {}
        self._admin = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ requests

    def resolve(
        self, name: str | None = None, version: int | None = None, alias: str | None = None
    ) -> LoadedModel:
        """The loaded version a request asks for (404 for anything not served)."""
        if version is not None and alias is not None:
            raise BadRequest("give a version or an alias, not both")
        name = name or self.default_model
        if name is None:
            raise NotReady("no default model: set ACTSERVE_DEFAULT_MODEL or name a model")
        route = self._routes.get(name)
        if route is None and name in self._unroutable:
            raise VersionBroken(f"model {name!r} cannot be served: {self._unroutable[name]}")
        if route is None:
            served = ", ".join(sorted(self._routes)) or "none"
            if name in self.store.list_models():
                raise ModelNotLoaded(
                    f"model {name!r} is in the store but not served here (served models: "
                    f"{served}); serve it with ACTSERVE_PRELOAD={name} or load a version with "
                    f"POST /admin/models/{name}/versions/<version>/load"
                )
            raise ModelNotLoaded(f"model {name!r} does not exist (served models: {served})")
        if alias is not None:
            if alias not in route.aliases:
                known = ", ".join(route.aliases) or "none"
                raise ModelNotLoaded(f"model {name!r} has no alias {alias!r} (aliases: {known})")
            version = route.aliases[alias]
        version = version if version is not None else route.default_version
        loaded = self._loaded.get((name, version))
        if loaded is None and (name, version) in self._broken:
            raise VersionBroken(
                f"version {version} of {name!r} failed to load and is not served: "
                f"{self._broken[name, version]}"
            )
        if loaded is None or loaded.state != VersionState.LOADED:
            served = ", ".join(str(v) for n, v in sorted(self._loaded) if n == name)
            hint = (
                f"; load it with POST /admin/models/{name}/versions/{version}/load"
                if version in self.store.list_versions(name)
                else ""
            )
            raise ModelNotLoaded(
                f"version {version} of {name!r} is not loaded (loaded versions: {served}){hint}"
            )
        return loaded

    def ready(self) -> bool:
        if self.default_model is None:
            return False
        try:
            self.resolve()
        except (NotReady, ModelNotLoaded, VersionBroken):
            return False
        return True

    def loaded(self) -> list[LoadedModel]:
        return [m for m in self._loaded.values() if m.state == VersionState.LOADED]

    def inference_backlog_s(self) -> float:
        """Seconds until every loaded version's queued views have likely run (they share the
        machine, so the sum)."""
        streams = [s for m in self._loaded.values() for s in m.streams]
        return sum(stream.batcher.backlog_seconds() for stream in streams)

    def snapshot(self) -> ServingSnapshot:
        held = {**self._draining, **self._loaded}
        versions = {
            key: VersionStatus(VersionState.BROKEN, error=why) for key, why in self._broken.items()
        }
        versions.update(
            (key, VersionStatus(model.state, model.runtime_description, model.load_seconds))
            for key, model in held.items()
        )
        return ServingSnapshot(
            default_model=self.default_model,
            routes=dict(self._routes),
            versions=versions,
            unroutable=dict(self._unroutable),
        )

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
            if (name, version) not in self._loaded:
                raise ModelNotLoaded(f"version {version} of {name!r} is not loaded")
            route = self._routes.get(name)
            routed = route.why_routed(version) if route is not None else None
            if routed is not None:
                raise Conflict(
                    f"{name} version {version} is {routed} of the routes this process serves; "
                    "point them elsewhere first (promote another version, then POST /admin/reload "
                    "if you changed the store with `actserve models`)"
                )
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

    async def delete_alias(self, name: str, alias: str) -> int:
        """Delete `alias` from the store and the routes; the version only it kept loaded
        drains. Returns the version it pointed at."""
        async with self._admin:
            version = self.store.delete_alias(name, alias).version
            if name in self._routes:
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
        """Route `name` and load its routed versions, each on its own: a version that fails
        to load is recorded as broken (and refused), the others serve."""
        try:
            route = self._route_from_store(name)
        except StoreError as error:
            self._unroutable[name] = str(error)
            logger.error("cannot serve %s: %s", name, error)
            return
        self._unroutable.pop(name, None)
        for version in sorted(route.versions()):
            await self._try_load(name, version)
        self._routes[name] = route

    async def _refresh(self, name: str) -> None:
        await self._serve(name)  # traffic moves only once routed versions are warmed
        await self._retire_unrouted()

    async def _try_load(self, name: str, version: int) -> None:
        """Load a routed version; a failure marks it broken instead of stopping the others."""
        try:
            await self._ensure_loaded(name, version)
        except Exception as error:  # any failure of one version: the others still serve
            why = f"{type(error).__name__}: {error}"
            self._broken[name, version] = why
            self.metrics.model_broken.labels(name, str(version)).set(1)
            logger.error("%s@%d failed to load and will not be served: %s", name, version, why)
        else:
            if self._broken.pop((name, version), None) is not None:
                self.metrics.model_broken.remove(name, str(version))

    def _route_from_store(self, name: str) -> Route:
        aliases = {alias: state.version for alias, state in self.store.aliases(name).items()}
        default = self.store.resolve(name).version
        return Route(aliases=aliases, default_version=default)

    async def _ensure_loaded(self, name: str, version: int) -> LoadedModel:
        existing = self._loaded.get((name, version))
        if existing is not None and existing.state == VersionState.LOADED:
            return existing
        started = time.perf_counter()
        manifest = await asyncio.to_thread(self.store.verify, name, version)
        directory = self.store.version_dir(name, version)
        # One runtime and batcher per network: two for a two-stream version (rgb, flow).
        runtimes: list[Runtime] = []
        try:
            for network in manifest.networks():
                require_decodable(network)
                runtimes.append(
                    await asyncio.to_thread(load_runtime, network, directory, self.runtime_options)
                )
                await asyncio.to_thread(self._warm_up, runtimes[-1], network)
        except BaseException:
            for runtime in runtimes:
                await asyncio.to_thread(runtime.close)
            raise
        observers = self.metrics.batch_observers(name, version, len(runtimes))
        streams = tuple(
            LoadedStream(
                network.spec.recipe.modality,
                runtime,
                Batcher(
                    runtime,
                    self.batching,
                    observer=observer,
                    name=f"{name}@{version}" + (f"/{network.spec.recipe.modality}" if i else ""),
                    upstream=self.upstream,
                ),
            )
            for i, (network, runtime, observer) in enumerate(
                zip(manifest.networks(), runtimes, observers, strict=True)
            )
        )
        for stream in streams:
            stream.batcher.start()
        seconds = time.perf_counter() - started
        loaded = LoadedModel(manifest, streams, seconds)
        self._loaded[(name, version)] = loaded
        self.metrics.track_version(name, version)
        self.metrics.model_loaded.labels(
            name, str(version), manifest.backbone, loaded.runtime_description
        ).set(1)
        self.metrics.model_load_seconds.labels(name, str(version)).set(seconds)
        logger.info(
            "loaded %s@%d in %.1f s: %s", name, version, seconds, loaded.runtime_description
        )
        return loaded

    def _warm_up(self, runtime: Runtime, manifest: Manifest) -> None:
        """Run every batch shape once: first calls allocate and plan; requests should not pay."""
        shape = manifest.spec.recipe.clip_shape
        for size in self.batching.resolved_warmup_sizes():
            runtime.run(np.zeros((size, *shape), np.float32))

    async def _retire_unrouted(self) -> None:
        needed = {(n, v) for n, route in self._routes.items() for v in route.versions()}
        needed |= self._pinned
        for key in [key for key in self._broken if key not in needed]:
            del self._broken[key]
            self.metrics.model_broken.remove(key[0], str(key[1]))
        for key, model in list(self._loaded.items()):
            if key in needed or model.state != VersionState.LOADED:
                continue
            model.state = VersionState.DRAINING
            self._draining[key] = self._loaded.pop(key)
            self.metrics.model_loaded.remove(
                key[0], str(key[1]), model.manifest.backbone, model.runtime_description
            )
            task = asyncio.create_task(model.drain_and_close(self.drain_timeout_s))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            task.add_done_callback(lambda _, key=key: self._draining.pop(key, None))
            logger.info("%s no longer routed: draining %d requests", model.key, model.active)


def require_decodable(network: Manifest) -> None:
    """Refuse at load, not per request, a flow network this installation cannot feed."""
    if network.spec.recipe.modality != Modality.FLOW:
        return
    try:
        require_opencv()
    except ImportError as exc:
        raise ModelLoadError(
            f"{network.name} v{network.version} reads optical flow: {exc}"
        ) from None
