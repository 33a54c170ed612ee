"""The HTTP JSON API: routes, one-line JSON errors, the body-size limit, and the server.

Every route that computes is a plain function, which FastAPI runs in its thread pool; the core
releases the GIL, so concurrent requests use every core. Each request reads the current bundle
once (:class:`~ials.serve.reloading.ModelHolder`), so a reload never mixes two models in one
answer.

Errors are ``{"error": "<one line>"}``: 400 malformed JSON, 404 unknown id or route, 405 wrong
method, 413 body over the limit, 415 a body that is not ``application/json``, 422 a body of the
wrong shape or type or a value out of range.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..interactions import UnknownIdError
from ..recommender import Results
from .reloading import Loaded, ModelHolder
from .schemas import (
    MAX_BODY_BYTES,
    BatchRequest,
    BatchResponse,
    Contribution,
    ExplainRequest,
    Explanation,
    HistoryRequest,
    ModelInfo,
    Recommendations,
    RecommendRequest,
    ReloadRequest,
    Scored,
    ScoreRequest,
    Scores,
    SimilarItemsRequest,
    SimilarResponse,
    SimilarUsersRequest,
)


def _scored(results: Results) -> list[Scored]:
    return [Scored(id=i, score=s) for i, s in results]


def _error(status: int, message: str) -> JSONResponse:
    text = " ".join(message.split()) or "error"
    return JSONResponse({"error": text}, status_code=status)


def _validation_message(err: RequestValidationError) -> tuple[int, str]:
    problems = err.errors()
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return 400, "malformed JSON body"
    # A union (an id is an int or a str) reports one problem per member, each under the
    # member's name: the first field's problems are joined into one line.
    messages: dict[str, list[str]] = {}
    for problem in problems:
        parts = [p for p in problem.get("loc", ()) if p != "body" and p not in _UNION_MEMBERS]
        where = ".".join(str(part) for part in parts) or "body"
        messages.setdefault(where, []).append(str(problem.get("msg", "invalid value")))
    where, texts = next(iter(messages.items()), ("body", ["invalid value"]))
    more = f" (and {len(messages) - 1} more fields)" if len(messages) > 1 else ""
    return 422, f"{where}: {' or '.join(dict.fromkeys(texts))}{more}"


_UNION_MEMBERS = {"int", "constrained-int", "str", "float", "list[...]", "none"}


class _BodyLimit:
    """Reads the whole request body before the application sees it, and refuses one over
    ``limit`` bytes with 413, whether announced by its Content-Length or found while reading."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit
        self._too_large = _error(413, f"request body over {limit} bytes")

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if size and kind != b"application/json":
            refused = _error(415, "send the body as JSON, with Content-Type: application/json")
            await refused(scope, receive, send)
            return
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


def create_app(
    path: str | os.PathLike[str],
    max_body_bytes: int = MAX_BODY_BYTES,
    reload_on_sighup: bool = True,
    threads: int | None = None,
) -> Any:
    """The ASGI application serving the bundle at ``path`` (loaded now: a bad file fails here,
    not at the first request). ``threads`` replaces the bundle's ``num_threads``: the cores
    one call may use (0: all); 1 suits many small concurrent requests."""
    holder = ModelHolder(path, threads)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if reload_on_sighup:
            import asyncio

            holder.reload_on_sighup(asyncio.get_running_loop())
        yield

    app = FastAPI(
        title="ials",
        summary="Recommendations, similar items and users, explanations and scores by raw id.",
        lifespan=lifespan,
    )
    app.state.holder = holder

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return _error(*_validation_message(err))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(UnknownIdError)
    async def unknown(_: Request, err: UnknownIdError) -> JSONResponse:
        return _error(404, str(err))

    @app.exception_handler(ValueError)
    async def bad_value(_: Request, err: ValueError) -> JSONResponse:
        return _error(422, str(err))

    @app.exception_handler(TypeError)
    async def bad_type(_: Request, err: TypeError) -> JSONResponse:
        return _error(422, str(err))

    @app.exception_handler(Exception)
    async def failed(_: Request, err: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(err).__name__}")

    def current() -> Loaded:
        loaded: Loaded = holder.current
        return loaded

    @app.get("/health", summary="liveness: 200 while the server answers")
    async def health() -> dict[str, Any]:  # on the event loop: answers even when threads are busy
        return {"status": "ok", "generation": current().generation}

    @app.get("/model", summary="the served bundle: sizes, settings, confidence transform")
    def model_info() -> ModelInfo:
        loaded = current()
        return ModelInfo(
            path=loaded.path,
            generation=loaded.generation,
            loaded_at=loaded.loaded_at,
            **loaded.recommender.info(),
        )

    @app.post("/recommend", summary="the best items for a known user")
    def recommend(body: RecommendRequest) -> Recommendations:
        results = current().recommender.recommend(
            body.user, body.n, body.filter_liked, body.exclude, body.restrict
        )
        return Recommendations(user=body.user, items=_scored(results))

    @app.post("/recommend/batch", summary="the best items for each of several known users")
    def recommend_batch(body: BatchRequest) -> BatchResponse:
        batch = current().recommender.recommend_batch(
            body.users, body.n, body.filter_liked, body.exclude, body.restrict
        )
        return BatchResponse(
            results=[
                Recommendations(user=user, items=_scored(results))
                for user, results in zip(body.users, batch, strict=True)
            ]
        )

    @app.post(
        "/recommend/history",
        summary="the best items for a listener given by their history (fold-in)",
    )
    def recommend_history(body: HistoryRequest) -> Recommendations:
        weights = [1.0] * len(body.items) if body.weights is None else body.weights
        if len(weights) != len(body.items):
            raise ValueError(f"weights has {len(weights)} values for {len(body.items)} items")
        recommender = current().recommender
        if body.store_as is None:
            history: dict[Any, float] = {}
            for item, weight in zip(body.items, weights, strict=True):
                history[item] = history.get(item, 0.0) + float(weight)
            results = recommender.recommend_history(
                history, body.n, body.filter_liked, body.exclude, body.restrict
            )
        else:
            recommender.fold_in_users([body.store_as] * len(body.items), body.items, weights)
            results = recommender.recommend(
                body.store_as, body.n, body.filter_liked, body.exclude, body.restrict
            )
        return Recommendations(user=body.store_as, items=_scored(results))

    @app.post("/similar/items", summary="the items closest to an item (cosine)")
    def similar_items(body: SimilarItemsRequest) -> SimilarResponse:
        results = current().recommender.similar_items(
            body.item, body.n, body.exclude, body.restrict
        )
        return SimilarResponse(query=body.item, results=_scored(results))

    @app.post("/similar/users", summary="the users closest to a user (cosine)")
    def similar_users(body: SimilarUsersRequest) -> SimilarResponse:
        results = current().recommender.similar_users(body.user, body.n)
        return SimilarResponse(query=body.user, results=_scored(results))

    @app.post("/explain", summary="why an item scores as it does for a user")
    def explain(body: ExplainRequest) -> Explanation:
        score, top = current().recommender.explain(body.user, body.item, body.n)
        return Explanation(
            user=body.user,
            item=body.item,
            score=score,
            contributions=[Contribution(item=i, contribution=c) for i, c in top],
        )

    @app.post("/score", summary="predicted preference of (user, item) pairs")
    def score(body: ScoreRequest) -> Scores:
        return Scores(scores=current().recommender.score(body.users, body.items))

    @app.post("/admin/reload", summary="load the bundle file again (or a new path) and swap it in")
    def reload(body: ReloadRequest | None = None) -> dict[str, Any]:
        try:
            loaded = holder.reload(None if body is None else body.path)
        except (OSError, ValueError) as err:
            message = f"{err.strerror}: {err.filename}" if isinstance(err, OSError) else str(err)
            raise HTTPException(
                422, f"reload failed, still serving the previous model: {message}"
            ) from None
        return {"path": loaded.path, "generation": loaded.generation}

    return _BodyLimit(app, max_body_bytes)


def run(
    path: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    max_body_bytes: int = MAX_BODY_BYTES,
    log_level: str = "info",
    threads: int | None = None,
) -> None:
    """Serves the bundle at ``path`` with uvicorn until SIGINT or SIGTERM. The address is bound
    before anything else starts, so a port in use or an unknown host is an ``OSError`` here."""
    import socket

    import uvicorn

    app = create_app(path, max_body_bytes, threads=threads)
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    # The protocol must be named: asyncio sets TCP_NODELAY only on sockets whose proto is
    # IPPROTO_TCP, and without it each response waits ~40 ms for the client's delayed ACK.
    with socket.socket(family, kind, protocol) as listening:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
        listening.listen(2048)
        config = uvicorn.Config(app, log_level=log_level, lifespan="on")
        uvicorn.Server(config).run(sockets=[listening])
