"""``/docs`` with Swagger UI served by the API itself, not from a CDN.

FastAPI's default docs page loads Swagger UI's JavaScript and CSS from a public CDN, so
on a closed store or HQ network (no internet) it is a blank page. The assets ship with
the package (``cloud/api/static/swagger-ui``: version, source and licence in its
README) and are served under ``STATIC_PATH``; the pattern is FastAPI's "Custom Docs UI
Static Assets (Self-Hosting)". ReDoc is not offered: its page also loads web fonts from
a CDN, and Swagger UI already shows the whole API.

    app = FastAPI(docs_url=None, redoc_url=None)
    install_docs(app)
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static" / "swagger-ui"
STATIC_PATH = "/static/swagger-ui"
DOCS_PATH = "/docs"


def install_docs(app: FastAPI) -> None:
    """Add ``/docs`` (and Swagger UI's OAuth2 redirect page) to an app created with
    ``docs_url=None``."""
    if app.openapi_url is None:
        return  # no schema, nothing to document
    openapi_url = app.openapi_url
    redirect_url = app.swagger_ui_oauth2_redirect_url
    app.mount(STATIC_PATH, StaticFiles(directory=ASSETS), name="swagger-ui")

    async def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a prefix, every URL the page loads needs it back
        # (as FastAPI's own docs route does).
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url, title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + redirect_url if redirect_url else None,
            swagger_js_url=f"{root}{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_PATH}/favicon-32x32.png")

    app.add_api_route(DOCS_PATH, swagger_ui, methods=["GET"], include_in_schema=False)
    if redirect_url:
        async def oauth2_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

        app.add_api_route(redirect_url, oauth2_redirect, methods=["GET"],
                          include_in_schema=False)
