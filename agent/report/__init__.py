"""The report stage: the run folder read once into `ReportData`, rendered as markdown and HTML.

- `render`: writes report.md, report.html and report.json from the templates
- `data`: the one reader of the run folder
- `checks`: refusals when the folder contradicts itself
- `plots`, `curves`, `pareto`, `compression`: figures and their tables
- `sources`: the patch and script sources a report shows
"""

__all__ = ["checks", "compression", "curves", "data", "pareto", "plots", "render", "sources"]
