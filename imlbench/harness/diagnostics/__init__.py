"""Diagnostics of the paper's three hypotheses, run by the same harness as ordinary runs."""

from imlbench.harness.diagnostics.base import (DIAGNOSTICS_DIR, Context, DiagnoseRequest, Diagnostic, diagnosable,
                                               diagnostic_names, get_diagnostic)

__all__ = ["DIAGNOSTICS_DIR", "Context", "DiagnoseRequest", "Diagnostic", "diagnosable", "diagnostic_names",
           "get_diagnostic"]
