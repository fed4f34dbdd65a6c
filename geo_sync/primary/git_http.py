"""Git smart HTTP on the Geo API, upload-pack only, through ``git http-backend``
(``geo_sync.git_http_backend``). Receive-pack is refused: secondaries only ever read.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from geo_sync.errors import MissingOnPrimary
from geo_sync.git_http_backend import is_push, run_upload_pack, split_upload_pack
from geo_sync.paths import resolve_inside
from replicators.repository import is_bare_repository
from replicators.type_map import git_original


def _refuse_push() -> Response:
    return JSONResponse(
        {
            "error": "read_only",
            "message": "the Geo API serves git read-only; pushes are refused",
            "hint": "push to the primary's own git server",
        },
        status_code=403,
    )


async def serve_git(request: Request, repositories_root: Path) -> Response:
    """Handle ``/git/<repo>.git/info/refs`` and ``/git/<repo>.git/git-upload-pack``."""
    rest, service = request.path_params["rest"], request.query_params.get("service")
    if is_push(rest, service):
        return _refuse_push()
    repo, suffix = split_upload_pack(rest, request.method, service)
    git_original().validate_path(repo)
    full = resolve_inside(repositories_root, repo)
    if not is_bare_repository(full):
        raise MissingOnPrimary(f"repository {repo} is missing on primary")
    return await run_upload_pack(request, repositories_root, repo, suffix)
