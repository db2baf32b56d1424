"""The OpenAPI schema the API serves at ``/api/openapi.json``: FastAPI's, made true to what the routes answer.

FastAPI describes the routes from their signatures; this module corrects what it cannot know:

- validation errors are 400 here (``common.install_error_handlers``), never FastAPI's 422: the
  422 it adds to every route with parameters is removed (the 400s are declared per route with
  ``common.errors``, like every other error);
- in team mode every API route needs a key or a session: the security schemes say so;
- the links between routes (an upload's document and job ids lead to the document, its removal,
  its re-indexing and the job), for clients and for schemathesis's stateful tests.
"""

from __future__ import annotations

from typing import Any

from ragchat.api.common import OPENAI_PREFIX, REST_PREFIX

_DOC = "/api/v1/documents/{doc_id}"
# An upload is accepted (202) before it is ingested: its document can be followed at once, but it
# can be re-indexed or removed only once the catalog holds it, which no link can promise.
_UPLOAD_LINKS = {
    "GetDocument": ("get", _DOC, "doc_id", "$response.body#/documents/0/id"),
    "GetJob": ("get", "/api/v1/jobs/{job_id}", "job_id", "$response.body#/job/id"),
}
_SECURITY_SCHEMES = {
    "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key: `ragchat users key create NAME`"},
    "session": {"type": "apiKey", "in": "cookie", "name": "ragchat_session", "description": "the page's session"},
}


def install_schema(app, login_required) -> None:
    """Serve the corrected schema; ``login_required()`` says whether the API needs a key (read
    when the schema is first asked for, after the login middleware is installed)."""
    build = app.openapi
    made: dict[str, dict] = {}

    def openapi() -> dict[str, Any]:
        if "schema" not in made:
            made["schema"] = refine(build(), login_required())
        return made["schema"]

    app.openapi = openapi


def refine(schema: dict[str, Any], login_required: bool) -> dict[str, Any]:
    """``schema`` (FastAPI's) with the API's operations corrected, in place; returned."""
    for path, item in schema.get("paths", {}).items():
        if not path.startswith((REST_PREFIX + "/", OPENAI_PREFIX + "/")):
            continue
        for operation in item.values():
            operation.get("responses", {}).pop("422", None)
            if login_required:
                operation["security"] = [{"apiKey": []}, {"session": []}]
    components = schema.setdefault("components", {})
    if login_required:
        components["securitySchemes"] = _SECURITY_SCHEMES
    if "#/components/schemas/HTTPValidationError" not in str(schema.get("paths")):  # no 422 left
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
    upload = schema.get("paths", {}).get(REST_PREFIX + "/documents", {}).get("post")
    if upload is not None:
        upload["responses"]["202"]["links"] = {
            name: {"operationId": _operation_id(schema, method, path), "parameters": {param: expr}}
            for name, (method, path, param, expr) in _UPLOAD_LINKS.items()
            if _operation_id(schema, method, path)}
    return schema


def _operation_id(schema: dict[str, Any], method: str, path: str) -> str | None:
    return schema.get("paths", {}).get(path, {}).get(method, {}).get("operationId")
