"""/docs and /redoc work without internet: the pages reference only this app's URLs, and the
app alone serves every one of them (through ASGI: no network at all)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from service.routes.docs import ASSETS


class References(HTMLParser):
    """Every URL a page makes the browser load: src and href attributes, and the OpenAPI
    document's `url:` in the inline start-up script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        if tag == "redoc":
            self.urls += [value for name, value in attrs if name == "spec-url" and value]

    def handle_data(self, data: str) -> None:
        self.urls += re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", data)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_docs_page_loads_only_what_the_app_serves(client, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    urls = references(response.text)
    assert "/openapi.json" in urls and any(url.endswith(".js") for url in urls), urls
    assert not re.search(r"https?://|//cdn|googleapis", response.text), "a page loads remotely"
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    for name, (_, media_type) in ASSETS.items():
        if f"/docs/assets/{name}" in urls:
            served = client.get(f"/docs/assets/{name}")
            assert served.headers["content-type"].startswith(media_type), name


def test_swagger_ui_gets_its_bundle_styles_and_no_online_validator(client) -> None:
    urls = references(client.get("/docs").text)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(urls)
    assert '"validatorUrl": null' in client.get("/docs").text
    bundle = client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    assert "Redoc" in client.get("/docs/assets/redoc.standalone.js").text


def test_the_pages_follow_a_proxys_root_path(store_root) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.conftest import settings_for

    with TestClient(create_app(settings_for(store_root)), root_path="/actserve") as proxied:
        urls = references(proxied.get("/docs").text)
    assert "/actserve/openapi.json" in urls and "/actserve/docs/assets/swagger-ui.css" in urls


def test_only_the_listed_assets_are_served_and_the_pages_stay_out_of_the_schema(client) -> None:
    assert client.get("/docs/assets/..%2Fcore.py").status_code == 404
    assert client.get("/docs/assets/consts.py").status_code == 404
    assert client.get("/docs/assets/../../etc/passwd").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]
