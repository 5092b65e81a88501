# %% [markdown]
# # stealbench from Python: one model-extraction attack
#
# Train a small digit victim, put it behind a defended API, spend 200 queries of another
# digit dataset on it, train a surrogate on the answers and score it. Run from the
# repository root (it reads `configs/smoke.yaml`); seconds on one CPU core.
# VS Code and Jupytext open this file as a notebook (`# %%` cells).

# %%
import stealbench as sb

config = sb.load_config("configs/smoke.yaml")
victim = sb.train_victim(config, "digits-lenet", epochs=5)  # or sb.load_victim("results", ...)
pool = sb.dataset(config, "uci-digits")  # the attacker's images: another digit source

api = sb.prediction_api(victim, "top2", defense="reverse-sigmoid", beta=0.2)
queries = sb.run_attack(api, "random", pool, budget=200, seed=0)
surrogate, scores = sb.fit_surrogate(queries, victim, arch="lenet", epochs=10, seed=0)

print(f"victim test accuracy {victim.test_acc:.3f}; the attacker sent {api.queries} queries")
for key in ("test_acc", "agreement", "recovery", "kl_divergence"):
    print(f"{key:>14} {scores[key]:.3f}")

# %% [markdown]
# `sb.available()` lists the strategies, defenses, architectures and granularities;
# `sb.score(model, victim)` scores any model against the victim.
