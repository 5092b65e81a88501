# Stage 5: one tidy table of every cell, summaries over seeds, one table per claim of the
# paper, the query accounting, figures and findings.

TABLES = [
    "victims",
    "cells",
    "summary",
    "per_class",
    "queries",
    "reproduction",
    "budget",
    "published",
    "pretraining",
    "granularity",
    "architecture",
    "strategies",
]
# The report's category of each table (snakemake --report): victims, attacks, claims.
TABLE_CATEGORY = {
    "victims": "Victims",
    "per_class": "Victims",
    "reproduction": "Claims",
    "budget": "Claims",
    "published": "Claims",
    "pretraining": "Claims",
    "granularity": "Claims",
    "architecture": "Claims",
}


rule aggregate_cells:
    input:
        surrogate_cells=all_surrogate_cells,
        queries=all_query_caches,
        datasets=lambda wildcards: sorted(
            {dataset_path(v["dataset"]) for v in config["victims"].values()}
        ),
        victims=expand("results/victims/{victim}/metrics.json", victim=VICTIMS),
    output:
        **{
            name: report(
                f"results/tables/{name}.parquet",
                caption=f"../report/tables/{name}.rst",
                category=TABLE_CATEGORY.get(name, "Attacks"),
                labels={"table": name, "format": "parquet"},
            )
            for name in TABLES
        },
        **{f"{name}_csv": f"results/tables/{name}.csv" for name in TABLES},
    log:
        "results/logs/report/aggregate_cells.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        victim_papers={v: spec.get("paper") for v, spec in config["victims"].items()},
        victim_inits={
            v: stealbench_config.victim_spec(config, v)["init"] for v in VICTIMS
        },
    script:
        "../workflow/scripts/aggregate_cells.py"


rule plot_claims:
    input:
        summary="results/tables/summary.parquet",
        strategies="results/tables/strategies.parquet",
    output:
        **{
            f"accuracy_{victim}_{ext}": (
                report(
                    f"results/figures/accuracy_vs_budget/{victim}.png",
                    caption="../report/accuracy_vs_budget.rst",
                    category="Attacks",
                    subcategory="Accuracy vs budget",
                    labels={"victim": victim, "format": "png"},
                )
                if ext == "png"
                else f"results/figures/accuracy_vs_budget/{victim}.svg"
            )
            for victim in VICTIMS
            for ext in ("png", "svg")
        },
        **{
            f"{figure}_{ext}": (
                report(
                    f"results/figures/{figure}.png",
                    caption=f"../report/{figure}.rst",
                    category="Claims" if figure != "strategies" else "Attacks",
                    labels={"figure": figure.replace("_", " "), "format": "png"},
                )
                if ext == "png"
                else f"results/figures/{figure}.{ext}"
            )
            for figure in FIGURES
            for ext in ("png", "svg")
        },
    log:
        "results/logs/report/plot_claims.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        victim_papers={v: spec.get("paper") for v, spec in config["victims"].items()},
    script:
        "../workflow/scripts/plot_claims.py"


rule write_findings:
    input:
        **(
            {name: f"results/tables/{name}.parquet" for name in DEFENSE_TABLES}
            if DEFENSES
            else {}
        ),
        **{
            name: f"results/tables/{name}.parquet"
            for name in TABLES
            if name != "per_class"
        },
    output:
        md=report(
            "results/findings.md",
            caption="../report/findings.rst",
            category="Findings",
        ),
        json=report(
            "results/findings.json",
            caption="../report/findings_json.rst",
            category="Findings",
        ),
    log:
        "results/logs/report/findings.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/write_findings.py"
