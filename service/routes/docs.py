"""/docs (Swagger UI) and /redoc (ReDoc) that work air-gapped: the pages and every file they
load come from this process.

FastAPI's own pages load Swagger UI, ReDoc and a favicon from CDNs, so on a machine without
internet they stay blank. Here the assets come from the installed `fastapi-offline` package
(Swagger UI 5 and ReDoc 2 bundles, MIT), served under /docs/assets/ by name from a fixed list,
never by a path taken from the request.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(tags=["docs"], include_in_schema=False)

ASSETS_URL = "/docs/assets"
#: Served name -> (file in the package, media type).
ASSETS = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui.css", "text/css"),
    "redoc.standalone.js": ("redoc.standalone.js", "text/javascript"),
    "favicon.png": ("favicon.png", "image/png"),
}
#: The bundles change only with the package; a day of caching spares reloads.
CACHE = {"Cache-Control": "public, max-age=86400"}


def _asset_dir():
    return files("fastapi_offline") / "static"


def _urls(request: Request) -> tuple[str, str]:
    """The OpenAPI document's URL and the assets' base, under the proxy's root path."""
    root = request.scope.get("root_path", "").rstrip("/")
    return f"{root}{request.app.openapi_url}", f"{root}{ASSETS_URL}"


@router.get("/docs")
def read_swagger_ui(request: Request) -> HTMLResponse:
    openapi_url, assets = _urls(request)
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png",
        # No spec validation badge: it would send the document to an online validator.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc")
def read_redoc(request: Request) -> HTMLResponse:
    openapi_url, assets = _urls(request)
    return get_redoc_html(
        openapi_url=openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{assets}/redoc.standalone.js",
        redoc_favicon_url=f"{assets}/favicon.png",
        with_google_fonts=False,
    )


def _add_asset_route(name: str, filename: str, media_type: str) -> None:
    def read_asset() -> FileResponse:
        return FileResponse(str(_asset_dir() / filename), media_type=media_type, headers=CACHE)

    router.add_api_route(f"{ASSETS_URL}/{name}", read_asset, methods=["GET"], name=name)


for _name, (_filename, _media_type) in ASSETS.items():
    _add_asset_route(_name, _filename, _media_type)
