"""``ials serve``: a real server process on loopback, driven by a real HTTP client (httpx)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ials
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

JSON = {"Content-Type": "application/json"}
ENDPOINTS = [  # those that compute
    "/recommend",
    "/recommend/batch",
    "/recommend/history",
    "/similar/items",
    "/similar/users",
    "/explain",
    "/score",
]


def _bundle(seed: int) -> ials.Recommender:
    rng = np.random.default_rng(0)
    users = [f"listener-{u}" for u in rng.integers(0, 80, 1500)]
    items = [int(i) for i in rng.integers(500, 620, 1500)]
    plays = rng.integers(1, 40, 1500)
    data = ials.Interactions.from_arrays(users, items, plays)
    model = ials.AlternatingLeastSquares(factors=8, iterations=5, random_state=seed)
    return ials.Recommender.fit(data, model, confidence=ials.Confidence("log", alpha=3.0))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    def __init__(self, path: Path, *options: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "ials", "serve", str(path), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--quiet", "--max-body-bytes", "20000", *options],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                assert self.process.stderr is not None
                raise RuntimeError(f"the server exited: {self.process.stderr.read()!r}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not answer within 60 s")
            time.sleep(0.1)

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(self.url + path, json=body, timeout=30)

    def ok(self, path: str, body: Any) -> Any:
        response = self.post(path, body)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ials.Recommender]]:
    path = tmp_path_factory.mktemp("serve") / "bundle.npz"
    _bundle(0).save(path)
    server = Server(path, "--threads", "1")
    try:
        yield server, ials.Recommender.load(path)
    finally:
        server.stop()


def _pairs(results: list[dict[str, Any]]) -> list[tuple[Any, float]]:
    return [(entry["id"], entry["score"]) for entry in results]


def test_answers_equal_the_in_process_api(served: tuple[Server, ials.Recommender]) -> None:
    server, rec = served
    user, other = "listener-5", "listener-11"
    got = server.ok("/recommend", {"user": user, "n": 7})
    assert got["user"] == user
    assert _pairs(got["items"]) == rec.recommend(user, N=7)
    options = {"user": user, "n": 15, "filter_liked": False, "exclude": [500, 501]}
    assert _pairs(server.ok("/recommend", options)["items"]) == rec.recommend(
        user, 15, False, [500, 501]
    )
    restrict = [int(i) for i in rec.item_ids[:12]]
    assert _pairs(server.ok("/recommend", {"user": user, "restrict": restrict})["items"]) == (
        rec.recommend(user, items=restrict)
    )
    batch = server.ok("/recommend/batch", {"users": [user, other, user], "n": 4})
    expected = rec.recommend_batch([user, other, user], N=4)
    assert [r["user"] for r in batch["results"]] == [user, other, user]
    assert [_pairs(r["items"]) for r in batch["results"]] == expected

    history = {"items": [503, 540, 503], "weights": [2, 7, 1.5], "n": 6}
    assert _pairs(server.ok("/recommend/history", history)["items"]) == rec.recommend_history(
        {503: 3.5, 540: 7}, N=6
    )
    similar = server.ok("/similar/items", {"item": 540, "n": 5, "exclude": [541]})
    assert similar["query"] == 540
    assert _pairs(similar["results"]) == rec.similar_items(540, 5, filter_items=[541])
    assert _pairs(server.ok("/similar/users", {"user": other, "n": 3})["results"]) == (
        rec.similar_users(other, 3)
    )
    explained = server.ok("/explain", {"user": user, "item": 540, "n": 4})
    score, top = rec.explain(user, 540, N=4)
    assert explained["score"] == score
    assert [(c["item"], c["contribution"]) for c in explained["contributions"]] == top
    pairs = {"users": [user, other], "items": [540, 503]}
    assert server.ok("/score", pairs)["scores"] == rec.score([user, other], [540, 503])

    info = httpx.get(server.url + "/model").json()
    expected_info = rec.info()
    assert expected_info["settings"]["num_threads"] == 0
    expected_info["settings"]["num_threads"] = 1  # --threads 1
    assert {k: v for k, v in info.items() if k not in ("path", "generation", "loaded_at")} == (
        expected_info
    )
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    schema = httpx.get(server.url + "/openapi.json").json()
    assert {*ENDPOINTS, "/model", "/health", "/admin/reload"} <= set(schema["paths"])


def test_a_history_is_stored_only_when_asked(served: tuple[Server, ials.Recommender]) -> None:
    server, rec = served
    body = {"items": [510, 520], "weights": [4, 1], "n": 5}
    server.ok("/recommend/history", body)
    assert server.post("/recommend", {"user": "walk-in"}).status_code == 404
    stored = server.ok("/recommend/history", {**body, "store_as": "walk-in"})
    assert stored["user"] == "walk-in"
    expected = ials.Recommender(rec.model, rec.interactions, rec.confidence)
    expected.fold_in_users(["walk-in", "walk-in"], [510, 520], [4, 1])
    assert _pairs(stored["items"]) == expected.recommend("walk-in", N=5)
    assert _pairs(server.ok("/recommend", {"user": "walk-in", "n": 5})["items"]) == (
        expected.recommend("walk-in", N=5)
    )
    assert httpx.get(server.url + "/model").json()["users"] == rec.n_users + 1


def test_keep_alive_answers_do_not_wait_for_delayed_acks(
    served: tuple[Server, ials.Recommender],
) -> None:
    # Without TCP_NODELAY on the server's connections every answer waited ~40 ms for the
    # client's delayed ACK; a small model answers in about a millisecond.
    server, _ = served
    latencies = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(30):
            start = time.perf_counter()
            assert http.post("/recommend", json={"user": "listener-5"}).status_code == 200
            latencies.append(time.perf_counter() - start)
    assert sorted(latencies)[len(latencies) // 2] < 0.02


def _raw(server: Server, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(server.url + path, content=content, headers=headers, timeout=30)


BAD = [
    ("/recommend", {"user": "nobody"}, 404, "unknown user id 'nobody'"),
    ("/recommend", {"user": "listener-5", "exclude": [9999]}, 404, "unknown item id 9999"),
    ("/similar/items", {"item": "9999"}, 404, "unknown item id"),
    ("/explain", {"user": "listener-5", "item": 1}, 404, "unknown item id 1"),
    ("/recommend", {"user": 1.5}, 422, "user: Input should be a valid integer"),
    ("/recommend", {"user": 10**30}, 422, "user: Input should be less than or equal to"),
    ("/score", {"users": ["listener-5"], "items": [-(10**30)]}, 422, "items.0: Input should be"),
    ("/recommend", {"user": True}, 422, "user:"),
    ("/recommend", {"user": ["listener-5"]}, 422, "user:"),
    ("/recommend", {"user": "listener-5", "n": "3"}, 422, "n: Input should be a valid integer"),
    ("/recommend", {"user": "listener-5", "filter_liked": "yes"}, 422, "filter_liked"),
    ("/recommend", {}, 422, "user: Field required"),
    ("/recommend", [], 422, "body:"),
    ("/recommend", {"user": "listener-5", "nn": 3}, 422, "nn: Extra inputs are not permitted"),
    ("/recommend", {"user": "listener-5", "n": 0}, 422, "n: Input should be greater than"),
    ("/recommend", {"user": "listener-5", "n": 1001}, 422, "n: Input should be less than"),
    ("/recommend/batch", {"users": []}, 422, "users:"),
    ("/recommend/batch", {"users": [["a"]]}, 422, "users.0:"),
    ("/recommend/history", {"items": [503], "weights": [1, 2]}, 422, "weights has 2 values"),
    ("/recommend/history", {"items": [503], "weights": [-1]}, 422, "must be >= 0 with the log"),
    ("/recommend/history", {"items": [503], "weights": ["1"]}, 422, "weights.0:"),
    ("/score", {"users": ["listener-5"], "items": [503, 504]}, 422, "same length"),
    ("/admin/reload", {"path": "/no/such/file.npz"}, 422, "still serving the previous model"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD)
def test_bad_requests_get_a_one_line_json_error(
    served: tuple[Server, ials.Recommender], path: str, body: Any, status: int, message: str
) -> None:
    server, _ = served
    response = server.post(path, body)
    _check_error(response, status, message)


def _check_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "\n" not in response.text
    error = response.json()
    assert list(error) == ["error"]
    assert message in error["error"]


def test_malformed_oversize_and_misrouted_requests(
    served: tuple[Server, ials.Recommender],
) -> None:
    server, _ = served
    _check_error(_raw(server, "/recommend", b'{"user": ', JSON), 400, "malformed JSON")
    _check_error(_raw(server, "/recommend", b"\xff\xfe", JSON), 400, "malformed JSON")
    big = json.dumps({"user": "listener-5", "exclude": list(range(5000))}).encode()
    _check_error(_raw(server, "/recommend", big, JSON), 413, "over 20000 bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is found while reading
        for _ in range(30):
            yield b" " * 1000

    streamed = httpx.post(server.url + "/recommend", content=chunks(), headers=JSON, timeout=30)
    _check_error(streamed, 413, "over 20000 bytes")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    _check_error(_raw(server, "/recommend", b'{"user": "listener-5"}', form), 415, "JSON")
    _check_error(httpx.get(server.url + "/recommend"), 405, "Method Not Allowed")
    _check_error(httpx.get(server.url + "/nowhere"), 404, "Not Found")
    assert server.process.poll() is None
    assert server.ok("/recommend", {"user": "listener-5"})["items"]


def test_model_swap_under_load_loses_no_request(tmp_path: Path) -> None:
    path = tmp_path / "bundle.npz"
    first, second = _bundle(0), _bundle(1)
    first.save(path)
    users = [str(u) for u in first.user_ids[:20]]
    answers = {
        name: {user: bundle.recommend(user, N=5) for user in users}
        for name, bundle in (("first", first), ("second", second))
    }
    assert answers["first"] != answers["second"]
    server = Server(path)
    try:
        reloading, swapped = threading.Event(), threading.Event()

        def client(worker: int) -> list[tuple[int, str, Any, bool]]:
            seen = []
            after = 0
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for request in range(2000):  # a bound, never reached: 20 more after the swaps
                    user = users[(worker + request) % len(users)]
                    during = reloading.is_set() and not swapped.is_set()
                    response = http.post("/recommend", json={"user": user, "n": 5})
                    seen.append((response.status_code, user, response.json(), during))
                    after += swapped.is_set()
                    if after == 20:
                        break
            return seen

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            running = [pool.submit(client, worker) for worker in range(8)]
            time.sleep(0.3)
            reloading.set()
            second.save(path)  # atomic: the server never sees half a file
            reloaded = server.ok("/admin/reload", None)
            assert reloaded["generation"] == 2
            first.save(path)
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while httpx.get(server.url + "/health").json()["generation"] != 3:
                assert time.monotonic() < deadline, "SIGHUP did not reload the model"
                time.sleep(0.05)
            swapped.set()
            results = [entry for future in running for entry in future.result()]
        assert sum(during for *_, during in results) >= 8  # requests ran during the swaps
        for status, user, body, _ in results:
            assert status == 200, body
            pairs = _pairs(body["items"])
            assert pairs in (answers["first"][user], answers["second"][user])
        after = server.ok("/recommend", {"user": users[0], "n": 5})
        assert _pairs(after["items"]) == answers["first"][users[0]]
        assert server.process.poll() is None
    finally:
        server.stop()


def test_import_ials_does_not_need_the_serve_extra() -> None:
    code = (
        "import sys, ials, ials.cli; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_refuses_a_bad_start(tmp_path: Path) -> None:
    path = tmp_path / "bundle.npz"
    _bundle(0).save(path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for arguments, message in [
            ([str(path), "--port", port], "Address already in use"),
            ([str(tmp_path / "absent.npz")], "No such file or directory"),
            ([str(path), "--port", "70000"], "expected a port 0..65535"),
        ]:
            result = subprocess.run(
                [sys.executable, "-m", "ials", "serve", *arguments],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 2, result.stderr
            assert message in result.stderr
            assert "Traceback" not in result.stderr


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_ids = st.sampled_from(["listener-5", "listener-11", 503, 540, "503", -1, 2**70])
_json = st.recursive(
    _scalars | _ids,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["user", "users", "item", "items", "n", "weights", "exclude", "x"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(path=st.sampled_from(ENDPOINTS), body=_json)
def test_no_body_makes_a_server_error(
    served: tuple[Server, ials.Recommender], path: str, body: Any
) -> None:
    server, _ = served
    content = json.dumps(body).encode()  # floats may be NaN or Infinity: also refused cleanly
    response = _raw(server, path, content, JSON)
    assert response.status_code in (200, 400, 404, 413, 422), response.text
    assert "\n" not in response.text
    if response.status_code != 200:
        assert list(response.json()) == ["error"]
