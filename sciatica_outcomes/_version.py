"""The package version, in a module that imports nothing.

Read by hatchling at build time (``[tool.hatch.version]``) and by ``sciatica-outcomes --version``.
"""

__version__ = "0.1.0"
