"""Errors raised by the exporters.

ExportError            an export could not be produced
├── OutputShapeError   the exported artifact returns outputs of other shapes than the model
├── ParityError        the exported artifact does not compute what the eager model computes
├── PrecisionError     a lower serving precision disagrees with fp32 beyond the bar
└── TritonExportError  a store version cannot become (or join) a Triton model repository
"""

from __future__ import annotations

from model_store.manifest import ParityReport, PrecisionAgreement


class ExportError(Exception):
    """Base class of every error the exporters raise on purpose."""


class OutputShapeError(ExportError):
    """The artifact returns outputs of other shapes than the eager model."""


class ParityError(ExportError):
    """The artifact differs from the eager model beyond tolerance; nothing was published."""

    def __init__(self, artifact: str, report: ParityReport) -> None:
        worst = max(report.checks, key=lambda c: c.max_rel_diff)
        lines = [
            f"{c.output} batch {c.batch_size}: max abs diff {c.max_abs_diff:.3g}, "
            f"max rel diff {c.max_rel_diff:.3g}"
            + (f", top-1 agreement {c.top1_agreement:.0%}" if c.top1_agreement is not None else "")
            for c in report.checks
        ]
        super().__init__(
            f"{artifact} failed the parity check on {report.runtime} (tolerance "
            f"{report.tolerance:g}, worst {worst.max_rel_diff:.3g}); nothing was published:\n  "
            + "\n  ".join(lines)
        )
        self.report = report


class PrecisionError(ExportError):
    """The lower precision disagrees with fp32 beyond the bar; nothing was published."""

    def __init__(self, agreement: PrecisionAgreement) -> None:
        lines = [
            f"{c.weights}: top-1 agreement {c.top1_agreement:.1%}, max |Δp| "
            f"{c.max_abs_prob_diff:.2g}"
            for c in agreement.checks
        ]
        super().__init__(
            f"{agreement.precision} on {agreement.runtime} disagrees with fp32 beyond the bar "
            f"(top-1 ≥ {agreement.min_top1:.0%}, max |Δp| ≤ {agreement.max_prob_diff:g}); "
            "nothing was published (--force publishes anyway):\n  " + "\n  ".join(lines)
        )
        self.agreement = agreement


class TritonExportError(ExportError):
    """A store version cannot be written into a Triton repository as asked."""
