"""The routes of the page: its static files, the open video's frames and views, prompts, the job and downloads.

Paths are never built from request strings: frames are validated integer indices, everything else has a
fixed name. POST requests must carry the ``X-Requested-By: masktrack`` header (a page of another site cannot
send it without a CORS preflight, which this server never grants), and the Host header must name this machine.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from masktrack.errors import InputError
from masktrack.web.exports import EXPORTS, write_export
from masktrack.web.job import Busy
from masktrack.web.prompts import parse_objects
from masktrack.web.state import Workspace
from masktrack.web.uploads import (
    TooLarge,
    extract_frames,
    remove_uploads,
    save_upload,
    upload_suffix,
)

STATIC = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
CSRF_HEADER = "x-requested-by"
LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_JSON_BYTES = 8 * 2**20


def static_file(name: str) -> bytes:
    """One of the page's own files (package data)."""
    return resources.files("masktrack.web").joinpath("static", name).read_bytes()


async def page(request: Request) -> Response:
    return Response(static_file("index.html"), media_type="text/html")


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        return error(404, "not found")
    return Response(static_file(name), media_type=STATIC[name])


def workspace(request: Request) -> Workspace:
    return request.app.state.workspace


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def info(request: Request) -> Response:
    return JSONResponse(workspace(request).info())


async def status(request: Request) -> Response:
    space = workspace(request)
    return JSONResponse({"job": space.job.progress.as_dict(), "version": space.version})


async def frame(request: Request) -> Response:
    space, index = workspace(request), request.path_params["index"]
    space.check_index(index)
    return Response(space.require_video().jpeg(index), media_type="image/jpeg")


async def view(request: Request) -> Response:
    space, index = workspace(request), request.path_params["index"]
    labels = await run_in_threadpool(space.labels, index)
    data = await run_in_threadpool(space.require_video().view, index, labels)
    return Response(data, media_type="image/jpeg")


async def read_json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise TooLarge("the request is too large")
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        raise InputError("the request is not valid JSON") from None
    if not isinstance(payload, dict):
        raise InputError("expected a JSON object")
    return payload


def frame_of(payload: dict[str, Any]) -> int:
    index = payload.get("frame")
    if isinstance(index, bool) or not isinstance(index, int):
        raise InputError("frame: expected a frame index")
    return index


async def propose(request: Request) -> Response:
    payload = await read_json(request)
    prompts = parse_objects(payload.get("objects", []))
    return JSONResponse(await run_in_threadpool(workspace(request).propose, frame_of(payload), prompts))


async def clear(request: Request) -> Response:
    payload = await read_json(request)
    return JSONResponse(workspace(request).clear(frame_of(payload)))


async def run(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(workspace(request).run), status_code=202)


async def upload(request: Request) -> Response:
    """The request body is the file (a video, or a zip of frames); ``?name=`` only picks the suffix."""
    space = workspace(request)
    space.check_idle()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > space.max_upload:
        raise TooLarge(f"the upload is over the {space.max_upload // 2**20} MB limit (masktrack app --max-upload-mb)")
    suffix = upload_suffix(request.query_params.get("name", ""))
    space.uploads += 1
    folder, number = space.run_dir / "uploads", space.uploads
    path = folder / f"upload-{number}{suffix}"
    try:
        await save_upload(request.stream(), path, space.max_upload)
        source = path
        if suffix == ".zip":
            source = await run_in_threadpool(extract_frames, path, folder / f"upload-{number}-frames", 4 * space.max_upload)
        await run_in_threadpool(space.open, source)
    finally:
        remove_uploads(folder, keep=space.source)
    return JSONResponse(space.info())


async def export(request: Request) -> Response:
    space, name = workspace(request), request.path_params["name"]
    if name not in EXPORTS:
        return error(404, "not found")
    frames = space.require_video()
    results = list(space.results_of_all_frames())
    path = await run_in_threadpool(write_export, name, results, frames.decoded, frames.fps, frames.name,
                                   space.run_dir / "exports")
    download = f"{frames.name}-{name}"
    return FileResponse(path, media_type=EXPORTS[name], filename=download)


class Guard(BaseHTTPMiddleware):
    """POSTs need the page's header (no cross-site requests); every response gets the security headers."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.method not in ("GET", "HEAD") and request.headers.get(CSRF_HEADER) != "masktrack":
            response: Response = error(403, f"requests need the header {CSRF_HEADER}: masktrack")
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response


def handlers() -> dict[Any, Any]:
    """Errors as JSON ``{"error": message}``: bad input 400, unknown 404, busy 409, too large 413."""
    def handle(status_code: int) -> Any:
        async def respond(request: Request, exc: Exception) -> Response:
            message = " ".join(str(exc.args[0] if exc.args else exc).split()) or "not found"
            return error(status_code, message)
        return respond
    return {InputError: handle(400), LookupError: handle(404), Busy: handle(409), TooLarge: handle(413)}


def create_app(space: Workspace, hosts: list[str] | None = None) -> Starlette:
    """The application serving ``space``; ``hosts``: Host header values accepted (default: this machine's names)."""
    routes = [
        Route("/", page), Route("/static/{name}", static),
        Route("/api/info", info), Route("/api/status", status),
        Route("/api/frame/{index:int}.jpg", frame), Route("/api/view/{index:int}.jpg", view),
        Route("/api/propose", propose, methods=["POST"]), Route("/api/clear", clear, methods=["POST"]),
        Route("/api/run", run, methods=["POST"]), Route("/api/upload", upload, methods=["POST"]),
        Route("/api/export/{name}", export),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts or LOCAL_HOSTS), Middleware(Guard)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers())
    app.state.workspace = space
    return app
