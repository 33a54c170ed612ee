"""Request and response bodies of the HTTP API, as pydantic models (they make the OpenAPI
schema). Bodies are strict: an id is a JSON integer or string, a count an integer, a flag a
boolean; unknown fields are refused."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

MAX_N = 1000
MAX_BATCH = 1000
MAX_BODY_BYTES = 1 << 20

Int64 = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
Id = Annotated[Int64 | StrictStr, Field(description="a raw id: an integer or a string")]
N = Annotated[int, Field(ge=1, le=MAX_N, description="how many results")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Selection(_Body):
    exclude: list[Id] | None = Field(None, description="item ids never returned")
    restrict: list[Id] | None = Field(None, description="only these item ids are ranked")


class RecommendRequest(_Selection):
    user: Id
    n: N = 10
    filter_liked: bool = Field(True, description="leave out the items in the user's history")


class BatchRequest(_Selection):
    users: list[Id] = Field(min_length=1, max_length=MAX_BATCH)
    n: N = 10
    filter_liked: bool = True


class HistoryRequest(_Selection):
    items: list[Id] = Field(min_length=1, description="the listener's items")
    weights: list[StrictFloat | StrictInt] | None = Field(
        None, description="raw strength of each item (default 1 each)"
    )
    n: N = 10
    filter_liked: bool = True
    store_as: Id | None = Field(
        None,
        description="add the history to this user's (a new id gets a new row), solve the user "
        "again and keep it, in memory until the next reload",
    )


class SimilarItemsRequest(_Selection):
    item: Id
    n: N = 10


class SimilarUsersRequest(_Body):
    user: Id
    n: N = 10


class ExplainRequest(_Body):
    user: Id
    item: Id
    n: N = 10


class ScoreRequest(_Body):
    users: list[Id] = Field(min_length=1, max_length=100_000)
    items: list[Id] = Field(min_length=1, max_length=100_000)


class ReloadRequest(_Body):
    path: StrictStr | None = Field(None, description="a new bundle file (default: the same path)")


class Scored(BaseModel):
    id: int | str
    score: float


class Recommendations(BaseModel):
    user: int | str | None
    items: list[Scored]


class BatchResponse(BaseModel):
    results: list[Recommendations]


class SimilarResponse(BaseModel):
    query: int | str
    results: list[Scored]


class Contribution(BaseModel):
    item: int | str
    contribution: float


class Explanation(BaseModel):
    user: int | str
    item: int | str
    score: float
    contributions: list[Contribution]


class Scores(BaseModel):
    scores: list[float]


class ModelInfo(BaseModel):
    path: str
    generation: int
    loaded_at: float
    users: int
    items: int
    interactions: int
    user_id_type: str
    item_id_type: str
    settings: dict[str, Any]
    confidence: dict[str, Any]
