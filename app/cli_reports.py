"""What `recloop promotions` prints: one line per decision, with its numbers."""

from __future__ import annotations

from collections.abc import Sequence

from app.warehouse.records import PromotionRecord


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def promotions_table(rows: Sequence[PromotionRecord]) -> str:
    if not rows:
        return "no promotion decision recorded yet"
    header = (
        f"{'time':<20} {'stage':<7} {'candidate':<28} {'serving':<28} {'decision':<12} "
        f"{'ips':>6} {'snips':>6} {'dr':>6} {'ci':>15} {'Δ low':>7} {'rows':>6}  reason"
    )
    lines = [header]
    for r in rows:
        ci = f"[{_number(r.ci_low)}, {_number(r.ci_high)}]" if r.ci_low is not None else "—"
        lines.append(
            f"{r.time:%Y-%m-%d %H:%M:%S}  {r.stage:<7} {r.candidate_version:<28} "
            f"{r.serving_version or '(none)':<28} {r.decision:<12} {_number(r.ips):>6} "
            f"{_number(r.snips):>6} {_number(r.dr):>6} {ci:>15} "
            f"{_number(r.difference_low):>7} {r.rows:>6}  {r.reason}"
        )
    return "\n".join(lines)
