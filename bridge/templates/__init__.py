"""Reading Packer templates from one git tree, as Packer would read them: what a template makes
Packer read, the builds it runs, its variables and their layers, what it reads from the
environment, and the source filters that choose a root's upstream image.

The rest of the bridge uses the names below; the modules behind them, lowest first:

| module | concern |
| --- | --- |
| `hcl.py` | HCL2 through its parser's syntax tree (blocks, labels quoted or not, references) |
| `unknowable.py` | what only the build can know, and the fix to offer |
| `functions.py` | the HCL2 conversions and functions evaluated |
| `layers.py` | where variables take their values (defaults, var files, `-var`), in Packer's order |
| `jsontemplate.py` | a JSON template's `{{ }}` strings, rendered as Packer renders them |
| `evaluate.py` | HCL2 expressions: variables, locals, interpolation |
| `files.py` | a template's files, each parsed once per tree; the plugins it requires |
| `blocks.py` | its builders or sources, provisioners, post-processors; the build `only` selects |
| `variables.py` | the variables it declares and the layers of their values |
| `environment.py` | what its build reads from the environment, with the layers applied |
| `reads.py` | the repository files it makes Packer read |
| `filters.py` | the source filters that choose a root's upstream image, evaluated |
| `pinning.py` | the template in an exported tree rewritten to build on the images picked |
"""

from __future__ import annotations

from bridge.templates.environment import (
    CREDENTIALS,
    EnvironmentReads,
    Variable,
    environment_reads,
)
from bridge.templates.files import other_templates, required_plugins
from bridge.templates.filters import fixed_source_amis, source_filters
from bridge.templates.pinning import pin
from bridge.templates.reads import Reads, template_reads
from bridge.templates.variables import declared_variables

__all__ = [
    "CREDENTIALS",
    "EnvironmentReads",
    "Reads",
    "Variable",
    "declared_variables",
    "environment_reads",
    "fixed_source_amis",
    "other_templates",
    "pin",
    "required_plugins",
    "source_filters",
    "template_reads",
]
