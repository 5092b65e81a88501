# Stage 3: the attackers query the victims. A sampling attack (random) never looks at the
# answers: seed s's cache asks the victim only for the images no earlier seed drew, and every
# granularity and defense is computed from the cached posteriors. A sequential attack chooses
# its queries from the answers: one run per granularity, defense and seed, each against the
# API that attacker faces. Budgets are prefixes of one attacker's queries.


rule sample_pool:
    input:
        unpack(lambda wildcards: victim_files(wildcards.victim)),
        pool=attack_pool,
        earlier=lambda wildcards: earlier_caches(
            wildcards.victim, wildcards.attack, wildcards.seed
        ),
    output:
        "results/queries/{victim}/{attack}/s{seed}.parquet",
    log:
        "results/logs/queries/{victim}/{attack}/s{seed}.log",
    wildcard_constraints:
        attack=_alternatives(SAMPLING),
    priority: 30
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("sample_pool"),
        runtime=RESOURCES.runtime("sample_pool"),
        gpu=RESOURCES.gpu("sample_pool"),
    params:
        attack=lambda wildcards: stealbench_config.attack_spec(config, wildcards.attack),
        budget=lambda wildcards: stealbench_config.query_budget(
            config, wildcards.attack, wildcards.victim
        ),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/sample_pool.py"


rule run_attack:
    input:
        unpack(attack_inputs),
    output:
        "results/queries/{victim}/{attack}/{defense}/s{seed}.parquet",
    log:
        "results/logs/queries/{victim}/{attack}/{defense}/s{seed}.log",
    benchmark:
        "results/benchmarks/queries/{victim}/{attack}/{defense}/s{seed}.tsv"
    wildcard_constraints:
        attack=_alternatives(SEQUENTIAL),
    priority: 30
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=RESOURCES.mem_mb("run_attack"),
        runtime=RESOURCES.runtime("run_attack"),
        gpu=RESOURCES.gpu("run_attack"),
    params:
        attack=lambda wildcards: stealbench_config.attack_spec(config, wildcards.attack),
        budget=lambda wildcards: stealbench_config.query_budget(
            config, wildcards.attack, wildcards.victim
        ),
        snapshots=lambda wildcards: stealbench_config.query_budgets(
            config, wildcards.attack, wildcards.victim
        ),
        granularities=lambda wildcards: stealbench_config.run_granularities(
            config, wildcards.attack, wildcards.victim, wildcards.defense
        ),
        defense=lambda wildcards: (
            vars(INSTANCES[wildcards.defense]) if wildcards.defense != "none" else None
        ),
        seed=config["seed"],
        device=config["device"],
    script:
        "../workflow/scripts/run_attack.py"
