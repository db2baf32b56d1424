"""ragchat's REST API under ``/api/v1``: documents, ingestion progress, search and ask.

=========================================  ==============================================================
``GET    /api/v1/collections``             the collections this user may search, with document counts
``GET    /api/v1/documents``               the documents this user may see (``?collection=`` narrows)
``POST   /api/v1/documents``               upload files (multipart ``file``, optional ``collection``,
                                           ``password``); 202 with the job and each document's id
``GET    /api/v1/documents/{id}``          one document: catalog status and live ingestion progress
``DELETE /api/v1/documents/{id}``          remove it (202 when it waits for a running ingestion)
``POST   /api/v1/documents/{id}/reindex``  parse and index it again from its stored original (202)
``GET    /api/v1/jobs/{id}``               an upload/reindex/remove job of this user, file by file
``POST   /api/v1/search``                  ranked passages with scores, page and offsets
``POST   /api/v1/ask``                     an answer with its sources: NDJSON events, or one JSON
``POST   /api/v1/feedback``                rate an answer (up/down, note, correction); 201 with its id
``GET    /api/v1/feedback``                your feedback; ``?all=true``: the team's (admins)
=========================================  ==============================================================

Everything goes through the engine (``engine.catalog``, ``engine.retriever``, ``engine.chat``)
and the background ingestion it shares with the web page (``ragchat.ingest.jobs.IngestJobs``),
with the access rules of ragchat.core.access: a document another user owns answers 404, the same
as one that does not exist. Ingestion work started here is grouped under the user (``api:<user>``),
so every client of a user can follow it. Answers are not saved as conversations (the page's
conversations stay the page's).

Routes are added by theme (``_library_routes``, ``_upload_route``, ``_document_routes``,
``_job_route``, ``_search_route``, ``_ask_route``, ``_feedback_routes``); a new route goes in the builder of its theme,
or in a new builder listed in ``rest_router``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ragchat.core import access
from ragchat.retrieve import scope
from ragchat.api.common import (REST_PREFIX, AnswerRun, ApiError, answer_json, errors, numbers_only, scoped_filters,
                                source_json)
from ragchat.auth import current_user, is_admin
from ragchat.answer.engine import ChatOptions
from ragchat.answer.sanitize import MarkdownStream
from ragchat.ingest.pipeline import safe_name

MAX_FILES = 50  # per upload request
_DOC_ID = re.compile(r"[0-9a-f]{32}")
_TERMINAL = {"done", "unchanged", "failed"}
# The upload's multipart body, for the schema (the route reads the form itself, to stream big files).
UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": f"A file to ingest; repeat the field for more (at most {MAX_FILES})."},
        "collection": {"type": "string", "maxLength": 200, "pattern": "^[^\\x00-\\x1f\\x7f]*$",
                       "description": "The collection (in team mode, one of your own; default: the configured one)."},
        "password": {"type": "string", "description": "The password of an encrypted PDF."},
    }}}}}


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=100_000)


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=10_000, description="What to look for.")
    top_k: int | None = Field(None, ge=1, le=50, description="How many passages (default: retrieval.top_k).")
    collections: list[str] | None = Field(None, description="Only these collections (default: all you may read).")
    document_ids: list[str] | None = Field(None, description="Only these documents.")
    mode: Literal["hybrid", "dense", "lexical"] | None = Field(None, description="Which indexes answer (default: retrieval.mode).")
    weight: float | None = Field(None, ge=0.0, le=1.0, description="The dense ranking's share of the fusion, from 0 "
                                 "(lexical only) to 1 (dense only); default: the settings' weights, as chat uses them.")
    _numbers = numbers_only("top_k", "weight")


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=10_000)
    history: list[Turn] = Field(default_factory=list, description="Earlier turns, oldest first.")
    collections: list[str] | None = Field(None, description="Only these collections (default: all you may read).")
    document_ids: list[str] | None = Field(None, description="Only these documents.")
    top_k: int | None = Field(None, ge=1, le=50, description="Sources handed to the model (default: retrieval.top_k).")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    model: str | None = Field(None, max_length=200, description='"builtin" or an Ollama model name (default: configured).')
    stream: bool = Field(True, strict=True,
                         description="NDJSON events as the answer is written; false: one JSON object at the end.")
    _numbers = numbers_only("top_k", "temperature")


class FeedbackSource(BaseModel):
    doc_id: str = Field(pattern="^[0-9a-f]{32}$", description="The cited document, as /ask gave it.")
    chunk_id: str | None = Field(None, max_length=200)
    id: int | None = Field(None, ge=0, le=1000, description="The n of its [n] marker.")
    source: str | None = Field(None, max_length=1024)
    page: int | None = Field(None, ge=0)
    text: str | None = Field(None, max_length=10_000)
    _numbers = numbers_only("id", "page")


class FeedbackRequest(BaseModel):
    """The limits keep the largest valid body under JSON_BODY_LIMIT even with every character sent as
    a \\u escape, so a body the schema allows is never refused as too large (413)."""

    rating: Literal["up", "down"]
    question: str = Field(min_length=1, max_length=10_000)
    answer: str = Field(max_length=20_000, description="The answer as /ask gave it.")
    sources: list[FeedbackSource] = Field(default_factory=list, max_length=20, description="The sources it cited.")
    note: str = Field("", max_length=5_000, description="What was good or wrong.")
    correction: str = Field("", max_length=20_000, description="The right answer (makes a thumbs-down a test question).")
    model: str | None = Field(None, max_length=200, description="The model that answered, if you chose one.")


def jobs_key(user: str | None) -> str:
    """Ingestion started through the API is grouped by user (the page groups it by browser tab)."""
    return f"api:{user or ''}"


def rest_router(engine, jobs) -> APIRouter:
    """Every ``/api/v1`` route, over the engine and the ingestion jobs it shares with the page."""
    router = APIRouter(prefix=REST_PREFIX, tags=["ragchat"])
    ctx = _Context(engine, jobs)
    for add_routes in (_library_routes, _upload_route, _document_routes, _job_route, _search_route, _ask_route,
                       _feedback_routes):
        add_routes(router, ctx)
    return router


class _Context:
    """What the routes share: the engine, the ingestion jobs, and the access rule for one document."""

    def __init__(self, engine, jobs):
        self.engine, self.jobs, self.settings = engine, jobs, engine.settings

    def readable(self, doc_id: str, user: str | None):
        info = self.engine.catalog.get(doc_id) if _DOC_ID.fullmatch(doc_id) else None
        return info if info is not None and access.can_read(info, user) else None

    def document(self, doc_id: str, user: str | None):
        info = self.readable(doc_id, user)
        if info is None:
            raise ApiError(404, f"no such document (or not yours to see): see GET {REST_PREFIX}/documents", "not_found")
        return info

    def job_json(self, job) -> dict:
        return {"id": job.id, "kind": job.kind, "finished": job.finished, "error": job.error,
                "url": f"{REST_PREFIX}/jobs/{job.id}", "files": self.jobs.job_rows(job)}


def _library_routes(router: APIRouter, ctx: _Context) -> None:
    @router.get("/collections", summary="Collections you may search", responses=errors())
    def collections(user: str | None = Depends(current_user)):
        docs = scope.visible_documents(ctx.engine.catalog, user)
        counts: dict[str, int] = {}
        for d in docs:
            counts[d.collection] = counts.get(d.collection, 0) + 1
        return {"collections": [{"name": c, "documents": counts.get(c, 0), "private": access.is_private(c)}
                                for c in ctx.engine.allowed_collections(user)]}

    @router.get("/documents", summary="Documents you may see", responses=errors())
    def list_documents(collection: str | None = Query(None, description="Only this collection."),
                       user: str | None = Depends(current_user)):
        docs = scope.visible_documents(ctx.engine.catalog, user)
        return {"documents": [d.summary() for d in docs if collection is None or d.collection == collection]}


def _upload_route(router: APIRouter, ctx: _Context) -> None:
    @router.post("/documents", status_code=202, summary="Upload files (multipart) to ingest in the background",
                 responses=errors(400, 403, 413), openapi_extra={"requestBody": UPLOAD_BODY})
    async def upload(request: Request, user: str | None = Depends(current_user)):
        try:
            form = await request.form(max_files=MAX_FILES, max_fields=20)
        except ApiError:
            raise
        except Exception as exc:  # Starlette's MultiPartException and malformed bodies
            raise ApiError(400, f"send the files as multipart/form-data fields named 'file': {exc}", "bad_upload") from None
        try:
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            if not files:
                raise ApiError(400, "no file in the request: send one or more multipart/form-data fields named 'file'",
                               "no_file")
            collection = str(form.get("collection") or "").strip() or ctx.settings.collection
            password = str(form.get("password") or "") or None
            try:
                target, _ = access.owned_collection(collection, user)
            except access.AccessError as exc:
                raise ApiError(403 if access.is_private(collection) else 400, str(exc), "bad_collection") from None
            limit = ctx.settings.ingest.max_file_mb * 1_000_000
            for f in files:
                if f.size is not None and f.size > limit:
                    raise ApiError(413, f"{f.filename}: larger than ingest.max_file_mb ({ctx.settings.ingest.max_file_mb} MB)",
                                   "too_large")
            job = await run_in_threadpool(_submit, ctx.jobs, files, collection, user, password)
        finally:
            await form.close()
        return {"job": ctx.job_json(job), "collection": target,
                "documents": [{"name": r["source"], "id": r["doc_id"] or None, "stage": r["stage"],
                               "url": f"{REST_PREFIX}/documents/{r['doc_id']}" if r["doc_id"] else None}
                              for r in ctx.jobs.job_rows(job)]}


def _document_routes(router: APIRouter, ctx: _Context) -> None:
    @router.get("/documents/{doc_id}", summary="One document, with its ingestion progress", responses=errors(404))
    def get_document(doc_id: str, user: str | None = Depends(current_user)):
        info = ctx.readable(doc_id, user)
        row = ctx.jobs.row_for_document(jobs_key(user), doc_id) if _DOC_ID.fullmatch(doc_id) else None
        if info is None and row is not None and row["stage"] in ("done", "unchanged"):
            row = None  # finished work on a document that is gone since (removed)
        if info is None and row is None:
            raise ApiError(404, f"no such document (or not yours to see): see GET {REST_PREFIX}/documents", "not_found")
        out = info.summary() if info is not None else {"id": doc_id, "name": row["source"], "status": "queued"}
        if info is None and row["stage"] == "failed":
            out["status"], out["error"] = "failed", row["message"].removeprefix("failed: ")
        progress = None
        if row is not None:
            progress = {k: row[k] for k in ("stage", "done", "total", "message", "job")}
            progress["finished"] = row["stage"] in _TERMINAL
        out["progress"] = progress
        return out

    @router.delete("/documents/{doc_id}", summary="Remove a document from the indexes and the store",
                   responses={202: {"description": "queued after the ingestion that runs on it"}, **errors(404, 503)})
    def delete_document(doc_id: str, user: str | None = Depends(current_user)):
        info = ctx.document(doc_id, user)
        removed, failed, queued = ctx.jobs.remove_now_or_later(jobs_key(user), [info])
        if queued is not None:
            return JSONResponse({"removed": False, "queued": True, "job": ctx.job_json(queued)}, status_code=202)
        if failed:
            raise ApiError(503, f"{info.source}: {failed[0][1]}", "remove_failed")
        return {"removed": bool(removed), "id": doc_id}

    @router.post("/documents/{doc_id}/reindex", status_code=202, summary="Parse and index a document again",
                 responses=errors(404, 409))
    def reindex_document(doc_id: str, user: str | None = Depends(current_user)):
        info = ctx.document(doc_id, user)
        if not info.original or not (ctx.engine.store / info.original).is_file():
            raise ApiError(409, f"{info.source}: the original file is not stored; upload it again", "no_original")
        return {"job": ctx.job_json(ctx.jobs.submit_reindex(jobs_key(user), [info]))}


def _job_route(router: APIRouter, ctx: _Context) -> None:
    @router.get("/jobs/{job_id}", summary="Progress of an ingestion job, file by file", responses=errors(404))
    def get_job(job_id: str, user: str | None = Depends(current_user)):
        job = ctx.jobs.job(jobs_key(user), job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id} of yours (finished jobs are kept for a while only)", "not_found")
        return ctx.job_json(job)


def _search_route(router: APIRouter, ctx: _Context) -> None:
    @router.post("/search", summary="Ranked passages for a query", responses=errors(400, 403, 413, 503))
    def search(body: SearchRequest, user: str | None = Depends(current_user)):
        filters = scoped_filters(ctx.engine, user, body.collections, body.document_ids)
        hits = ctx.engine.retriever.search(body.query, filters, k=body.top_k, mode=body.mode, weight=body.weight)
        return {"query": body.query, "results": [
            {"rank": i + 1, "score": round(h.score, 6), "relevant": h.relevant, "dense": h.dense, "lexical": h.lexical,
             "document_id": h.doc_id, "chunk_id": h.chunk_id, "source": h.source, "collection": h.collection,
             "page": h.page, "start": h.start, "end": h.end, "text": h.text}
            for i, h in enumerate(hits)]}


def _ask_route(router: APIRouter, ctx: _Context) -> None:
    @router.post("/ask", summary="Ask a question: a streamed answer (NDJSON) and its sources",
                 responses={200: {"content": {"application/x-ndjson": {}, "application/json": {}}},
                            **errors(400, 403, 413, 503)})
    async def ask(body: AskRequest, user: str | None = Depends(current_user)):
        filters = scoped_filters(ctx.engine, user, body.collections, body.document_ids)
        options = ChatOptions(top_k=body.top_k, temperature=body.temperature, model=body.model or None)
        history = [(t.role, t.content) for t in body.history]
        run = await AnswerRun.start(ctx.engine.chat.stream(body.question, history, filters, options))
        if not body.stream:
            return answer_json(await run.final())
        return StreamingResponse(_ndjson(run), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _feedback_routes(router: APIRouter, ctx: _Context) -> None:
    @router.post("/feedback", status_code=201, summary="Rate an answer: thumbs up or down, a note, a correction",
                 responses=errors(400, 403, 413))
    def add_feedback(body: FeedbackRequest, user: str | None = Depends(current_user)):
        fid = ctx.engine.feedback.rate_answer(
            user, rating=1 if body.rating == "up" else -1, question=body.question, answer=body.answer,
            sources=[s.model_dump() for s in body.sources], note=body.note, correction=body.correction,
            model=body.model or "")
        return {"id": fid, "rating": body.rating}

    @router.get("/feedback", summary="Your feedback (admins: with ?all=true, the team's)", responses=errors(400, 403))
    def list_feedback(everyone: bool = Query(False, alias="all", description="Everyone's (admins only)."),
                      user: str | None = Depends(current_user)):
        if everyone and user is not None and not is_admin(ctx.engine.catalog, user):
            raise ApiError(403, "only an admin may read the team's feedback", "forbidden")
        return {"feedback": ctx.engine.feedback.rows(user, everyone=everyone)}


def _submit(jobs, files: list[UploadFile], collection: str, user: str | None, password: str | None):
    """Write the uploads to a private folder, hand them to the ingestion jobs (which copy them
    again under safe names), and remove the folder."""
    folder = Path(tempfile.mkdtemp(prefix="ragchat-api-", dir=jobs.workdir))
    try:
        paths = []
        for i, f in enumerate(files):
            sub = folder / str(i)  # keeps two uploads with one name apart; the jobs number them
            sub.mkdir()
            dest = sub / safe_name(f.filename or "file")
            f.file.seek(0)
            with open(dest, "wb") as out:
                shutil.copyfileobj(f.file, out, 1 << 20)
            paths.append(dest)
        return jobs.submit_upload(jobs_key(user), paths, collection, owner=user, password=password)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _ndjson(run: AnswerRun):
    """One JSON object per line: status, sources, token (text made safe as it streams), done."""
    safe = MarkdownStream()
    streamed = False

    def line(obj: dict) -> bytes:
        return (json.dumps(obj, ensure_ascii=False) + "\n").encode()

    async for event in run.events():
        if event.kind == "status":
            yield line({"type": "status", "text": event.text})
        elif event.kind == "sources" and event.answer is not None:
            a = event.answer
            yield line({"type": "sources", "retrieved": [source_json(s) for s in a.retrieved], "provider": a.provider,
                        "model": a.model, "notice": a.notice})
        elif event.kind == "token":
            streamed = True
            text = safe.feed(event.text)
            if text:
                yield line({"type": "token", "text": text})
        elif event.kind == "done" and event.answer is not None:
            rest = safe.flush() if streamed else event.answer.text  # ragchat's own replies come whole
            if rest:
                yield line({"type": "token", "text": rest})
            yield line({"type": "done", **answer_json(event.answer)})
