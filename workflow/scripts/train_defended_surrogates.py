"""Surrogates trained on defended answers, every defense at every strength, for one
(victim, attack, arch, seed): a sampling attacker's cached posteriors pass through each
defense; a sequential attacker reads the run it made against that defended API. Each row
also records what the defense cost benign users, how far it moved the attacker's answers,
and, for a defense with a post-attack audit (DAWN's verification), what the owner concludes
of the surrogate and of independent models that never saw an answer (false claims)."""

import dataclasses

import numpy as np

from stealbench import defense as defenses
from stealbench import io
from stealbench.attack import cache, surrogates
from stealbench.defense.context import build_context
from stealbench.defense.evaluation import benign_costs, perturbation
from stealbench.defense.registry import AuditContext, Defense
from stealbench.models.checkpoint import JobCheckpoints
from stealbench.runtime import setup

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup(sm)
w, p = sm.wildcards, sm.params
inputs = surrogates.load_attack_inputs(sm.input)
test = inputs.test
names = {i["name"] for i in p.instances}
context = build_context(
    names,
    p.seed,
    w.victim,
    inputs.victim_meta,
    device=p.device,
    model_paths={name: sm.input[name] for name in sm.input.keys()},
)
# Models of the victim's task that never saw an answer: what an audit must not call stolen.
independent = {}
audits = [defenses.DEFENSES[name].audit is not Defense.audit for name in names]
if sm.input.get("independent") and any(audits):
    from stealbench.models.architectures import create_model

    saved = io.load_state_dict(sm.input.independent)
    for name, state in saved["models"].items():
        if name.startswith(f"{w.arch}/"):
            model = create_model(w.arch, saved["num_classes"], p.device)
            model.load_state_dict(state)
            independent[name] = model.eval()
spec = surrogates.spec_from_config(w.arch, "scratch", p.surrogates, p.device)
model_seed = surrogates.surrogate_seed(p.seed, w.victim, w.attack, w.arch, int(w.seed))
axes = surrogates.cell_axes(w, p)
budgets = p.budgets
top = max(budgets)
shared = None
if not p.sequential:  # one cache answers every defense: its posteriors through each
    shared = cache.load_cache(sm.input.queries[0], sm.input.earlier, inputs.expect)
    shared_images = np.asarray(shared.query_images(inputs.pool, shared.transfer_set(top)))
# Saved every checkpoint_minutes outside the outputs: the cell in training, and the rows of the
# cells done, which a rerun of a killed job takes as they are instead of training them again.
checkpoints = JobCheckpoints.for_job(sm)
rows = []
for instance, path in zip(
    p.instances, sm.input.queries if p.sequential else [None] * len(p.instances), strict=True
):
    defense = defenses.create(instance["name"], context, **instance["params"])
    costs = benign_costs(defense, test.victim_probs, test.images, test.labels)
    log.info("defense %s: benign utility %.4f", instance["id"], costs["benign_utility"])
    if not p.sequential:
        # A defense answers each query on its own (deterministic per query), so the prefix
        # of B queries gets the answers the first B of the defended prefix got.
        defended = defense(shared.probs[:top], shared_images)
        served = dataclasses.replace(shared, probs=defended)
    for granularity in p.granularities:
        if p.sequential:  # the run this attacker made against the defended API
            served = cache.load_cache(path, expect=inputs.expect, granularity=granularity)
            run_images = np.asarray(served.query_images(inputs.pool, served.transfer_set(top)))
            defended = defense(served.probs[:top], run_images)
        true_probs = (served if p.sequential else shared).probs
        for budget in budgets:
            cell = f"{instance['id']}-{granularity}-b{budget}"
            if (done := checkpoints.finished(cell)) is not None:
                rows.append(done[0])
                continue
            model, metrics = surrogates.train_surrogate(
                served,
                inputs.pool,
                test,
                granularity,
                budget,
                spec,
                model_seed,
                checkpoint=checkpoints.fit(cell),
            )
            moved = perturbation(true_probs[:budget], defended[:budget])
            images = (run_images if p.sequential else shared_images)[:budget]
            row = {
                **axes,
                "defense_id": instance["id"],
                "defense": instance["name"],
                "strength": instance["strength"],
                "strength_value": instance["value"],
                "granularity": granularity,
                "budget": budget,
                **metrics,
                **costs,
                "attack_l1": moved["l1"],
                "attack_kl": moved["kl"],
                "attack_top1_changed": moved["top1_changed"],
                **defense.diagnose(true_probs[:budget], images),
            }
            audit = AuditContext(images, true_probs[:budget], p.audit.get(instance["name"], {}))
            verdict = defense.audit(model, audit)
            if verdict is not None:
                claims = [defense.audit(m, audit)["caught"] for m in independent.values()]
                verdict |= {"independent": len(claims), "false_claims": int(np.sum(claims))}
                row.update({f"{instance['name']}_{k}": v for k, v in verdict.items()})
            rows.append(row)
            checkpoints.record(cell, row)
io.write_rows(
    rows,
    sm.output.cells,
    {
        "kind": "defended_cells",
        **inputs.expect,
        "instances": p.instances,
        "training": p.surrogates["training"],
    },
)
checkpoints.remove()  # the outputs are written: nothing left to resume
