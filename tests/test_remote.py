"""Remote victims: the Open Inference Protocol client, its answer ledger, faults and kills.

Every server is real and on loopback (127.0.0.1, free ports): ``stealbench serve`` over a
toy lenet, and a fault-injecting HTTP front (tests/oip_servers.py). Every wait is bounded.
``pytest -s tests/test_remote.py`` prints the fault and kill tests' counts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from oip_servers import (
    MODEL,
    FaultFront,
    answered,
    per_image_posteriors,
    query_images,
    served,
    spec,
    toy_victim,
)

from stealbench.attack.api import apply_granularity
from stealbench.serve.app import Gate, Refused
from stealbench.victim import remote
from stealbench.victim.ledger import Ledger, answer_key
from stealbench.victim.remote import (
    BadAnswer,
    BudgetExceeded,
    RemoteError,
    RemoteVictim,
    check_answers,
    endpoint_checksum,
    probe,
    request_body,
)

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def victim():
    """(the toy victim's batch-invariant posteriors for uint8 images)."""
    return per_image_posteriors(toy_victim())


def key(path: str) -> str:
    """A pattern for the config key ``victims.toy.<path>`` as errors name it."""
    return re.escape(f"config key 'victims.toy.{path}'")


def rows(ledger_path: Path) -> int:
    with sqlite3.connect(ledger_path) as db:
        return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


# ----------------------------------------------------------------------------- ledger


def test_ledger_keeps_the_first_answer_counts_purposes_and_is_wal(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", "endpoint-a")
    sent = np.random.default_rng(0).random((3, 1, 2, 2), dtype=np.float32)
    keys = [answer_key("endpoint-a", s) for s in sent]
    answers = np.eye(3, dtype=np.float32)
    ledger.put(keys[:2], answers[:2], "attack", "r1")
    ledger.put(keys[1:], answers[1:] * 0.5, "evaluation", "r2")  # keys[1] again: ignored
    got = ledger.get(keys + [answer_key("endpoint-b", sent[0])])
    assert sorted(got) == sorted(keys)  # the other endpoint's key is a miss
    assert np.array_equal(got[keys[1]], answers[1])  # the first answer paid is kept
    assert np.array_equal(got[keys[2]], answers[2] * 0.5)
    assert ledger.counts() == {"attack": 2, "evaluation": 1}
    with sqlite3.connect(ledger.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert Ledger(ledger.path, "endpoint-b").count() == 0  # counted per endpoint


def test_answer_key_is_the_bytes_sent_and_the_endpoint():
    a = np.zeros((1, 2, 2), np.float32)
    b = a.copy()
    b[0, 0, 0] = np.float32(1e-7)
    assert answer_key("e", a) == answer_key("e", a.copy())
    assert answer_key("e", a) != answer_key("e", b)
    assert answer_key("e", a) != answer_key("f", a)


# ---------------------------------------------------------------- the wire, offline


def test_request_body_carries_the_exact_float32_values():
    endpoint = remote.Endpoint.from_spec("toy", spec("http://127.0.0.1:1"))
    sent = np.random.default_rng(0).integers(0, 256, (3, 1, 4, 4)).astype(np.float32) / 255
    sent[0, 0, 0, 0] = np.float32(0.1234567)  # a value off the k/255 grid
    body, headers = request_body(endpoint, "r-1", sent)
    request = json.loads(body)
    assert headers["Content-Type"] == "application/json"
    assert request["id"] == "r-1" and request["inputs"][0]["shape"] == [3, 1, 4, 4]
    assert np.array_equal(np.asarray(request["inputs"][0]["data"], np.float32), sent.ravel())
    body, headers = request_body(endpoint, "r-1", sent, binary=True)
    n = int(headers[remote.BINARY_HEADER])
    assert json.loads(body[:n])["inputs"][0]["parameters"]["binary_data_size"] == sent.nbytes
    assert np.array_equal(np.frombuffer(body[n:], "<f4"), sent.ravel())


def test_what_is_sent_is_the_input_contracts_tensor(tmp_path):
    """The client's numpy path for images already of the contract's shape gives the very
    float32 values of InputContract.prepare (the ledger's keys depend on them)."""
    from stealbench.victim.contract import InputContract

    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    for contract, images in [
        ({"size": 28, "channels": 1, "normalize": "none"}, x),
        ({"size": 28, "channels": 1, "normalize": {"mean": [0.5], "std": [0.25]}}, x),
        ({"size": 16, "channels": 3, "normalize": "imagenet"}, x),
        ({"size": 16, "channels": 1, "normalize": "none"}, x),
    ]:
        config = {**spec("http://127.0.0.1:1"), "input": contract}
        client = RemoteVictim("toy", config, tmp_path / "l.sqlite", checksum="c", binary=False)
        expected = InputContract.from_spec(contract).prepare(images)
        assert np.array_equal(client.prepare(images), expected)
        assert client.prepare(images).dtype == np.float32


def test_answers_of_another_class_count_in_the_ledger_are_an_error(tmp_path):
    config = spec("http://127.0.0.1:1")
    four = RemoteVictim("toy", config, tmp_path / "l.sqlite", checksum="c", binary=False)
    images = query_images(3, seed=0)
    keys = four._keys(four.prepare(images))
    four.ledger.put(keys, np.full((3, 4), 0.25, np.float32), "attack", "r")
    assert np.array_equal(four.posteriors(images), np.full((3, 4), 0.25, np.float32))
    five = {**config, "classes": 5}
    client = RemoteVictim("toy", five, tmp_path / "l.sqlite", checksum="c", binary=False)
    with pytest.raises(RemoteError, match=key("classes") + ": 5 classes declared, but the"):
        client.posteriors(images)


def _reply(data, shape=None) -> bytes:
    data = np.asarray(data, dtype=np.float64)
    shape = list(data.shape) if shape is None else shape
    return json.dumps({"outputs": [{"shape": shape, "data": data.ravel().tolist()}]}).encode()


GOOD = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])


@pytest.mark.parametrize(
    ("body", "returns", "says"),
    [
        (b'{"outputs": [{"shape": [2, 3], "data": [0.7, 0.2', "probs", "malformed JSON"),
        (b'{"outputs": []}', "probs", "no outputs[0]"),
        (_reply(GOOD[:1]), "probs", "shape [1, 3], expected [2, 3]"),
        (_reply(np.full((2, 4), 0.25)), "probs", "4 classes answered, 3 declared"),
        (_reply(GOOD.ravel()[:5], shape=[2, 3]), "probs", "has 5 values"),
        (_reply(np.where(GOOD == 0.2, np.nan, GOOD)), "probs", "non-finite"),
        (_reply(np.where(GOOD == 0.2, np.inf, GOOD)), "probs", "non-finite"),
        (_reply(GOOD - [[0, 0, 0.05], [0, 0, 0]]), "probs", "do not sum to 1"),
        (_reply(GOOD * [[1, 1, -1], [1, 1, 1]]), "top3", "negative"),
        (_reply(GOOD + [[0.1, 0, 0], [0, 0, 0]]), "top3", "sum above 1"),
        (_reply([[1.0, 0, 0], [0.5, 0.5, 0]]), "label", "not one-hot"),
        (_reply([[0.7, 0.2, 0], [0.1, 0.1, 0.8]]), "top2", "more than 2 non-zeros"),
    ],
)
def test_bad_answers_are_refused(body, returns, says):
    with pytest.raises(ValueError, match=None) as caught:
        check_answers(body, 2, 3, returns)
    assert says in str(caught.value)


@pytest.mark.parametrize("returns", ["probs", "top2", "top1", "label"])
def test_good_answers_pass_at_their_granularity(returns):
    answers = apply_granularity(GOOD.astype(np.float32), returns)
    assert np.array_equal(check_answers(_reply(answers), 2, 3, returns), answers)


def test_endpoint_checksum_names_the_answers_not_the_secret(monkeypatch):
    monkeypatch.setenv("TOY_KEY", "s3cret-never-shown")
    base = spec("http://127.0.0.1:1", auth={"env": "TOY_KEY"})
    checksum = endpoint_checksum(base, version="1")
    assert checksum == endpoint_checksum(spec("http://127.0.0.1:1"), version="1")  # no auth
    for changed in (
        endpoint_checksum(spec("http://127.0.0.1:2"), version="1"),
        endpoint_checksum(spec("http://127.0.0.1:1", model="other"), version="1"),
        endpoint_checksum(spec("http://127.0.0.1:1", returns="label"), version="1"),
        endpoint_checksum(base, version="2"),
    ):
        assert changed != checksum


# ------------------------------------------------------------------ a real server


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_answers_are_the_victims_each_image_paid_once(victim, tmp_path, binary):
    images = query_images(96, seed=1)
    queries = np.concatenate([images, images[:40]])  # 40 duplicates within the call
    with served(victim) as url:
        client = RemoteVictim.from_spec("toy", spec(url), tmp_path / "l.sqlite", binary=binary)
        assert client.binary is binary
        got = client.posteriors(queries)
        assert np.array_equal(got, victim(queries))  # bit-identical to the in-process victim
        assert answered(url) == 96  # each distinct image paid once
        assert (client.stats.images_sent, client.stats.requests) == (96, 6)
        again = RemoteVictim.from_spec(
            "toy", spec(url), tmp_path / "l.sqlite", purpose="evaluation"
        )
        more = query_images(112, seed=1)  # the 96 and 16 new ones
        assert np.array_equal(again.posteriors(more), victim(more))
        assert answered(url) == 112  # only the 16 new images were sent
        assert again.stats.ledger_hits == 96 and again.stats.images_sent == 16
        assert again.ledger.counts() == {"attack": 96, "evaluation": 16}


def test_a_model_version_change_is_another_endpoint(victim, tmp_path):
    with served(victim) as url:
        client = RemoteVictim.from_spec("toy", spec(url), tmp_path / "l.sqlite")
        assert client.checksum == endpoint_checksum(spec(url))  # version "1" from metadata
        assert client.checksum != endpoint_checksum(spec(url), version=False)


def test_answers_of_another_model_version_are_refused(victim, tmp_path):
    images = query_images(16, seed=13)
    with served(victim) as url:
        client = RemoteVictim.from_spec("toy", spec(url), tmp_path / "l.sqlite")
        assert client.version == "1"
        client.version = "0"  # as if the model were redeployed after the run started
        with pytest.raises(BadAnswer, match="answered by model version '1', not '0'"):
            client.posteriors(images)
    assert rows(tmp_path / "l.sqlite") == 0


def test_request_ids_are_unique_over_calls(victim, tmp_path):
    with served(victim) as url, FaultFront(url) as front:
        client = RemoteVictim.from_spec("toy", spec(front.url), tmp_path / "l.sqlite")
        client.posteriors(query_images(32, seed=14))
        client.posteriors(query_images(32, seed=15))
    ids = [e["id"] for e in front.log]
    assert len(ids) == 4 and len(set(ids)) == 4


def test_budget_exceeded_names_the_key_and_keeps_the_answers(victim, tmp_path):
    images = query_images(64, seed=3)
    with served(victim) as url:
        config = spec(url, max_requests=2, concurrency=1)
        client = RemoteVictim.from_spec("toy", config, tmp_path / "l.sqlite")
        with pytest.raises(BudgetExceeded, match=key("remote.max_requests")):
            client.posteriors(images)
        assert client.stats.requests == 2 and answered(url) == 32
        assert rows(tmp_path / "l.sqlite") == 32  # what was paid for is kept
        rerun = RemoteVictim.from_spec("toy", config, tmp_path / "l.sqlite")  # a fresh budget
        assert np.array_equal(rerun.posteriors(images), victim(images))
        assert rerun.stats.ledger_hits == 32 and rerun.stats.requests == 2
        assert answered(url) == 64  # two runs of two requests: each image paid once


class KeyGate(Gate):
    """Lets in only ``Authorization: Bearer <key>``."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def client(self, headers: dict) -> str:
        if headers.get("authorization") != f"Bearer {self.key}":
            raise Refused(401, "unknown API key")
        return "the-attacker"


def test_the_api_key_is_sent_and_never_written(victim, tmp_path, monkeypatch, caplog):
    secret = "s3cret-9f8e7d6c5b4a"
    monkeypatch.setenv("TOY_KEY", secret)
    config = spec("", auth={"env": "TOY_KEY", "header": "Authorization", "scheme": "Bearer"})
    images = query_images(40, seed=4)
    caplog.set_level(logging.DEBUG)
    with served(victim, gate=KeyGate(secret)) as url:
        config["remote"]["url"] = url
        client = RemoteVictim.from_spec("toy", config, tmp_path / "l.sqlite")
        assert np.array_equal(client.posteriors(images), victim(images))  # the key was sent
        monkeypatch.setenv("TOY_KEY", secret + "-wrong")
        wrong = RemoteVictim.from_spec("toy", config, tmp_path / "wrong.sqlite")
        with pytest.raises(RemoteError) as refused:
            wrong.posteriors(query_images(8, seed=5))
        assert "HTTP 401" in str(refused.value)
        assert re.search(key("remote.auth"), str(refused.value))
        monkeypatch.delenv("TOY_KEY")
        with pytest.raises(RemoteError, match=key("remote.auth.env") + ".*TOY_KEY"):
            RemoteVictim.from_spec("toy", config, tmp_path / "l.sqlite")
    written = [
        caplog.text,
        str(refused.value),
        repr(client),
        repr(client.stats),
        repr(client.endpoint),
        client.checksum,
        *(p.read_bytes().decode("latin-1") for p in tmp_path.glob("*")),
    ]
    assert "/v2/models" in caplog.text or "127.0.0.1" in caplog.text  # something was logged
    for text in written:
        assert secret not in text


def test_refused_answers_are_never_stored(victim, tmp_path):
    images = query_images(32, seed=6)
    with served(victim) as url, FaultFront(url, {0: "nan"}) as front:
        config = spec(front.url, concurrency=1)
        client = RemoteVictim.from_spec("toy", config, tmp_path / "l.sqlite")
        with pytest.raises(BadAnswer) as caught:
            client.posteriors(images)
        request_id = front.log[0]["id"]
        message = str(caught.value)
        assert request_id in message and front.url in message and "images 0..15" in message
        assert "non-finite" in message and "not stored" in message
        assert rows(tmp_path / "l.sqlite") == 0  # refused, and nothing after it was sent
        assert answered(url) == 16


def test_retry_after_is_honoured(victim, tmp_path):
    images = query_images(16, seed=7)
    with served(victim) as url, FaultFront(url, {0: "429"}) as front:
        client = RemoteVictim.from_spec("toy", spec(front.url), tmp_path / "l.sqlite")
        assert np.array_equal(client.posteriors(images), victim(images))
    first, second = front.log
    assert first["id"] == second["id"] and first["fault"] == "429"
    waited = second["arrived"] - first["left"]
    assert waited >= 0.95, f"the retry came {waited:.2f} s after a 429 with Retry-After: 1"
    assert client.stats.retries == 1


def test_a_request_that_keeps_failing_names_itself_and_keeps_what_came_before(victim, tmp_path):
    images = query_images(48, seed=10)
    always = {n: "500" for n in range(1, 100)}  # every request after the first
    with served(victim) as url, FaultFront(url, always) as front:
        config = spec(front.url, concurrency=1, retries=2)
        client = RemoteVictim.from_spec("toy", config, tmp_path / "l.sqlite")
        with pytest.raises(RemoteError) as caught:
            client.posteriors(images)
        assert len(front.log) == 4  # one answered, then one request tried three times
        assert rows(tmp_path / "l.sqlite") == 16 and answered(url) == 16
    message = str(caught.value)
    assert front.log[1]["id"] in message and "images 16..31" in message
    assert "failed after 2 retries" in message and "ResponseError" in message


def test_batches_and_concurrency_are_the_configs(victim, tmp_path):
    images = query_images(8 * 12, seed=12)
    delays = {n: "delay" for n in range(8)}
    with served(victim) as url, FaultFront(url, delays, delay_s=0.5) as front:
        config = spec(front.url, batch_size=12, concurrency=3)
        client = RemoteVictim.from_spec("toy", config, tmp_path / "l.sqlite")
        assert np.array_equal(client.posteriors(images), victim(images))
    assert [e["images"] for e in front.log] == [12] * 8
    assert front.most_in_flight == 3  # each request held 0.5 s: three at a time, not more


def test_the_retry_policy_is_urllib3s_with_backoff_jitter_and_post():
    endpoint = remote.Endpoint.from_spec("toy", spec("http://127.0.0.1:1", retries=5))
    http = remote.pool_manager(endpoint)
    retry = http.connection_pool_kw["retries"]
    assert retry.total == 5 and retry.backoff_factor == 0.05 and retry.backoff_jitter > 0
    assert set(retry.status_forcelist) == {429, 500, 502, 503, 504}
    assert retry.is_retry("POST", 503) and retry.respect_retry_after_header
    assert http.connection_pool_kw["maxsize"] == 2  # the concurrency
    assert http.connection_pool_kw["timeout"].read_timeout == 10


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_probe_names_the_key_at_fault(victim):
    with pytest.raises(RemoteError, match=key("remote.url") + ": .* does not answer"):
        probe("toy", spec(f"http://127.0.0.1:{closed_port()}", retries=1))
    with served(victim) as url:
        assert probe("toy", spec(url)).shape == (4, 4)
        five = {**spec(url), "classes": 5}
        with pytest.raises(RemoteError, match=key("classes") + ": 5 classes declared"):
            probe("toy", five)
        big = {**spec(url), "input": {"size": 32, "channels": 1, "normalize": "none"}}
        with pytest.raises(RemoteError, match=key("input") + ": the server rejected"):
            probe("toy", big)
        with pytest.raises(RemoteError, match=key("remote.model")):
            probe("toy", spec(url, model="nope"))
        assert answered(url) == 8  # one batch per probe the server could answer (two)


@pytest.mark.parametrize(
    ("granularity", "declared", "says"),
    [
        ("top2", "probs", "do not sum to 1"),
        ("top2", "top1", "more than 1 non-zeros"),
        ("probs", "label", "not one-hot"),
        ("label", None, None),  # one-hot rows are valid probs: that mistake cannot be seen
    ],
)
def test_coarse_apis_are_recorded_as_they_answer(tmp_path, granularity, declared, says):
    """What the ledger records is what the API answers; an answer coarser (or finer) than
    ``returns`` declares is refused where the rows show it."""
    images = query_images(32, seed=8)

    def unsure(images):  # the toy victim is so sure that its top-2 sums to one within 1e-3
        seeds = images.reshape(len(images), -1).sum(axis=1, dtype=np.int64)
        rows = [np.random.default_rng(int(s)).dirichlet(np.ones(4)) for s in seeds]
        return np.array(rows, dtype=np.float32)

    with served(unsure, granularity=granularity) as url:
        client = RemoteVictim.from_spec("toy", spec(url, returns=granularity), tmp_path / "a")
        expected = apply_granularity(unsure(images), granularity)
        assert np.array_equal(client.posteriors(images), expected)
        if declared is not None:
            wrong = RemoteVictim.from_spec("toy", spec(url, returns=declared), tmp_path / "b")
            with pytest.raises(BadAnswer, match=says):
                wrong.posteriors(images)
            assert rows(tmp_path / "b") == 0


# ----------------------------------------------------------------------------- faults


def test_faults_complete_without_paying_twice_or_fail_and_resume(victim, tmp_path):
    """Transport faults are retried and the run completes with each image paid once; bad
    answers stop the run naming the request, and a rerun resumes to the unfaulted answers."""
    images = query_images(160, seed=9)
    queries = np.concatenate([images, images[:40]])
    expected = victim(queries)
    transport = {1: "drop", 2: "500", 3: "429", 5: "slow", 8: "drop"}
    with served(victim) as url, FaultFront(url, transport, slow_s=30.0) as front:
        config = spec(front.url, timeout_s=1.0)
        client = RemoteVictim.from_spec("toy", config, tmp_path / "a.sqlite")
        start = time.monotonic()
        got = client.posteriors(queries)
        seconds = time.monotonic() - start
        paid = answered(url)
    assert np.array_equal(got, expected)
    assert seconds < 15  # the slow answer was given up after timeout_s (1 s), not awaited
    assert paid == len(images) == rows(tmp_path / "a.sqlite")  # nothing paid twice
    assert client.stats.retries == len(transport) == len(front.log) - client.stats.requests
    (limited,) = [e for e in front.log if e["fault"] == "429"]
    retried = [e for e in front.arrivals(limited["id"]) if e["number"] > limited["number"]]
    assert retried[0]["arrived"] - limited["left"] >= 0.95  # Retry-After: 1 was waited
    print(
        f"\n[faults: transport] images requested {len(queries)} ({len(images)} distinct), "
        f"answered by the server {paid}, requests {client.stats.requests}, "
        f"retries {client.stats.retries}, {seconds:.1f} s"
    )

    content = {2: "malformed", 6: "nan"}
    with served(victim) as url, FaultFront(url, content) as front:
        config = spec(front.url, timeout_s=1.0)
        first = RemoteVictim.from_spec("toy", config, tmp_path / "b.sqlite")
        with pytest.raises(BadAnswer) as caught:
            first.posteriors(queries)
        bad = front.log[2]
        assert bad["id"] in str(caught.value) and "malformed JSON" in str(caught.value)
        kept = rows(tmp_path / "b.sqlite")
        billed = answered(url)
        assert kept == billed - 16  # all answered but the refused one were kept
        front.faults.clear()  # the same endpoint, healthy again
        rerun = RemoteVictim.from_spec("toy", config, tmp_path / "b.sqlite")
        assert np.array_equal(rerun.posteriors(queries), expected)
        paid = answered(url)
    assert rerun.stats.images_sent == len(images) - kept
    assert paid == len(images) + 16  # the refused batch was paid for twice
    print(
        f"[faults: content] first run: {kept} answers kept, {billed} billed, failed with: "
        f"{str(caught.value)[:160]}...; rerun sent {rerun.stats.images_sent} (the rest); "
        f"answered by the server in all {paid} for {len(images)} distinct images"
    )


# ------------------------------------------------------------------------------- kill


def test_sigkill_mid_query_then_resume_pays_the_budget_exactly(victim, tmp_path):
    budget, seed, hold = 512, 11, 160
    ledger = tmp_path / "l.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)])}

    def attacker(url: str, out: Path) -> subprocess.Popen:
        command = [sys.executable, str(HERE / "oip_servers.py"), url, str(ledger)]
        return subprocess.Popen([*command, str(budget), str(seed), str(out)], env=env)

    with served(victim) as url, FaultFront(url, hold_after=hold) as front:
        child = attacker(front.url, tmp_path / "killed.npz")
        try:
            deadline = time.monotonic() + 60
            while not (front.held and rows(ledger) == answered(url)):
                assert child.poll() is None, "the attacker ended before it was killed"
                assert time.monotonic() < deadline, (
                    f"after 60 s, {answered(url)} images answered, {rows(ledger)} in the ledger, "
                    f"{front.held} requests held"
                )
                time.sleep(0.05)
            before = answered(url)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode == -signal.SIGKILL
        assert hold <= before < budget and rows(ledger) == before
        front.hold_after = None  # the same endpoint, answering again
        front.release()
        resumed = attacker(front.url, tmp_path / "resumed.npz")
        assert resumed.wait(timeout=300) == 0
        paid = answered(url)
    result = np.load(tmp_path / "resumed.npz")
    assert paid == budget  # the server answered each of the budget's images exactly once
    assert int(result["images_sent"]) == budget - before
    assert np.array_equal(result["answers"], victim(query_images(budget, seed)))
    print(
        f"\n[kill] budget {budget}: killed with {before} answered and in the ledger; the "
        f"resumed run sent {int(result['images_sent'])} in {int(result['requests'])} requests; "
        f"answered by the server in all {paid}"
    )


# ------------------------------------------------------------- a third-party server


def test_the_client_talks_to_mlserver(tmp_path):
    """MLServer (Seldon's Open Inference Protocol server, not written here; in a virtualenv of
    its own: tests/oip_mlserver.py) serving the toy victim as TorchScript: the client's
    requests are accepted, its answers are the victim's, and a rerun is answered from the
    ledger."""
    import torch
    from oip_mlserver import mlserver

    from stealbench.models.training import predict_proba

    model = toy_victim()
    with warnings.catch_warnings():  # TorchScript's deprecation and tracer notices
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(model, torch.zeros(1, 1, 28, 28))
    scripted.save(str(tmp_path / "victim.pt"))
    images = query_images(48, seed=16)
    with mlserver(tmp_path / "victim.pt", tmp_path, name=MODEL) as url:
        config = spec(url, batch_size=16, concurrency=2)
        client = RemoteVictim.from_spec("toy", config, tmp_path / "l.sqlite")
        assert client.binary is False  # MLServer does not list Triton's binary extension
        got = client.posteriors(images)
        again = RemoteVictim.from_spec("toy", config, tmp_path / "l.sqlite")
        assert np.array_equal(again.posteriors(images), got)
    expected = np.concatenate([predict_proba(model, images[i : i + 16]) for i in (0, 16, 32)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # TorchScript, its batches
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert client.stats.images_sent == 48 and again.stats.ledger_hits == 48
    assert again.stats.requests == 0


def test_two_jobs_share_one_ledger(victim, tmp_path):
    """Two processes (two jobs of one victim) write one ledger at once: SQLite's WAL and busy
    timeout serialise their commits, and every answer of both is kept."""
    ledger = tmp_path / "l.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)])}
    with served(victim) as url:
        jobs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "oip_servers.py"),
                    url,
                    str(ledger),
                    "160",
                    str(seed),
                    str(tmp_path / f"{seed}.npz"),
                ],
                env=env,
            )
            for seed in (21, 22)
        ]
        assert [job.wait(timeout=300) for job in jobs] == [0, 0]
        assert answered(url) == 320 == rows(ledger)
    for seed in (21, 22):
        got = np.load(tmp_path / f"{seed}.npz")["answers"]
        assert np.array_equal(got, victim(query_images(160, seed)))
