"""Import an external victim (checkpoint, torchscript, torchvision or remote): write the files
train_victim writes - its model file (absent for a remote victim), metrics and test-split
posteriors - so that every later job reads any victim the same way.

model.pt is the state dict (a checkpoint's Classifier, a torchvision model's own) or the
scripted module re-saved with torch.jit.save; weights_checksum is the checksum of that state
dict (the source file's SHA-256 is kept as file_sha256), or for a remote victim the client's
endpoint checksum (url, model, its version, returns). A remote victim is queried through
stealbench.victim.remote (RemoteVictim.from_spec(name, spec, ledger, purpose="evaluation")),
whose answers are kept in results/victims/<name>/answers.sqlite."""

import warnings

import numpy as np
import torch

from stealbench import io
from stealbench.data import datasets
from stealbench.metrics import accuracy
from stealbench.models.victims import write_test_outputs
from stealbench.runtime import setup
from stealbench.victim import probe

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
name, spec = sm.wildcards.victim, sm.params.victim
source = spec["source"]
dataset = datasets.load(sm.input.dataset)
probe.check_classes(name, spec, list(dataset.classes))
x_test, y_test = dataset.split("test")
if len(x_test) == 0:
    raise ValueError(f"dataset '{dataset.name}' needs a non-empty test split for a victim")
record = {}
if source == "remote":
    # The client and its ledger (stealbench.victim.remote): evaluation queries are counted
    # apart from any attacker's budget, and survive a failed job in the ledger.
    from stealbench.victim import sources
    from stealbench.victim.remote import RemoteVictim

    victim = RemoteVictim.from_spec(name, spec, sources.ledger_path(name), purpose="evaluation")
    test_probs = np.asarray(victim.posteriors(np.asarray(x_test)), dtype=np.float32)
    weights_checksum = victim.checksum  # url, model, its version and returns (no secret)
    s = victim.stats
    log.info(
        "victim %s: %d images sent in %d requests (%d retried attempts), %d from the ledger",
        name,
        s.images_sent,
        s.requests,
        s.retries,
        s.ledger_hits,
    )
    victim.close()
    record["remote"] = spec["remote"]
else:
    from stealbench.models.victims import victim_posteriors
    from stealbench.victim.local import load_external, state_of

    model, file_sha256 = load_external(name, spec, sm.params.device)
    probe.probe_model(name, spec, model, np.asarray(x_test[: probe.BATCH]))
    test_probs = victim_posteriors(model, x_test)
    if source == "torchscript":
        scripted = model[1]
        with warnings.catch_warnings():  # TorchScript's deprecation notice
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(scripted, sm.output.model)
        weights_checksum = io.state_dict_checksum(scripted.state_dict())
    else:
        state = state_of(model)
        io.save_state_dict(state, sm.output.model)
        weights_checksum = io.state_dict_checksum(state)
    record["file_sha256"] = file_sha256
    if source == "checkpoint":  # a registered architecture fed at the contract's size
        record["input_size"] = spec["input"]["size"]
test_acc = accuracy(test_probs.argmax(1), y_test)

write_test_outputs(sm.output.test_outputs, name, dataset, test_probs)
io.write_json(
    {
        "victim": name,
        "source": source,
        "arch": spec["arch"],
        "init": spec["init"],
        "input": spec["input"],
        "classes": spec["classes"],
        "dataset": dataset.name,
        "dataset_checksum": dataset.checksum,
        "num_classes": len(dataset.classes),
        "test_acc": test_acc,
        "weights_checksum": weights_checksum,
        **record,
    },
    sm.output.metrics,
)
log.info("victim %s (%s %s): test accuracy %.4f", name, source, spec["arch"], test_acc)
