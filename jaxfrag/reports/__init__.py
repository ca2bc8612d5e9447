"""What a run folder's rows say: one module per kind of run, each with its tables, text and own figures.

* `sweep` -- summary.csv, the scaling fits and figures, the printed gap table (`jaxfrag.sweep`).
* `grid` -- measures.csv, slopes.csv, paired.csv and the compression-vs-fragility figure (linear, relu).
* `mnist` -- Tables 5-6, the paper's claims and Figure 3 (`jaxfrag.mnist`).
* `imagenet` -- Tables 7-8 and Figure 6 (`jaxfrag.imagenet`).

Every report reads rows only (a run folder's cells or results.parquet), so a finished or resumed run
reports the same; every interval comes from `jaxfrag.stats.interval` and is printed by
`jaxfrag.stats.format_interval` (± is one standard error; [low, high] a 95% t-interval).
"""
