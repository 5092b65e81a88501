# Stage 5: one tidy table of every cell, the query accounting, figures and findings.


rule aggregate_cells:
    input:
        metrics=all_cell_metrics,
        queries=all_query_caches,
    output:
        cells=report(
            "results/tables/cells.parquet",
            caption="../report/cells.rst",
            category="Tables",
        ),
        cells_csv="results/tables/cells.csv",
        queries="results/tables/queries.parquet",
        queries_csv="results/tables/queries.csv",
    log:
        "results/logs/report/aggregate_cells.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../workflow/scripts/aggregate_cells.py"


rule plot_accuracy_vs_budget:
    input:
        cells="results/tables/cells.parquet",
    output:
        png=report(
            "results/figures/accuracy_vs_budget/{victim}.png",
            caption="../report/accuracy_vs_budget.rst",
            category="Figures",
            subcategory="Accuracy vs budget",
            labels={"victim": "{victim}", "format": "png"},
        ),
        svg="results/figures/accuracy_vs_budget/{victim}.svg",
    log:
        "results/logs/report/accuracy_vs_budget/{victim}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../workflow/scripts/plot_accuracy_vs_budget.py"


rule write_findings:
    input:
        cells="results/tables/cells.parquet",
        queries="results/tables/queries.parquet",
    output:
        report("results/findings.md", caption="../report/findings.rst", category="Findings"),
    log:
        "results/logs/report/findings.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        "../workflow/scripts/write_findings.py"
