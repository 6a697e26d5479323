"""The report stage: the run folder read once into `ReportData`, rendered as markdown and HTML.

- `render`: writes report.md, report.html and report.json from the templates
- `data`: the one reader of the run folder
- `studies`: a study's and a loop's results seen as one view
- `rows`: the rows of the report's tables, built from the loaded results
- `calibration`: the measured false-positive rate a report quotes
- `caveats`: the caveats a report computes (a reference at the metric's bound, ties among the best trials)
- `checks`: refusals when the folder contradicts itself
- `plots`, `curves`, `pareto`, `compression`: figures and their tables
- `sources`: the patch and script sources a report shows
"""

__all__ = [
    "calibration",
    "caveats",
    "checks",
    "compression",
    "curves",
    "data",
    "pareto",
    "plots",
    "render",
    "rows",
    "sources",
    "studies",
]
