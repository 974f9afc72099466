"""What `recloop promotions` and `recloop ab report` print and plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from app.evaluation.canary import RewardStats
from app.warehouse.records import PromotionRecord


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def promotions_table(rows: Sequence[PromotionRecord]) -> str:
    if not rows:
        return "no promotion decision recorded yet"
    # Version names are long (v-<run id>): the columns are as wide as the longest one.
    width = max(len("candidate"), *(len(r.candidate_version) for r in rows))
    width = max(width, *(len(r.serving_version or "(none)") for r in rows))
    header = (
        f"{'time':<20} {'stage':<8} {'candidate':<{width}} {'serving':<{width}} "
        f"{'decision':<12} {'ips':>6} {'snips':>6} {'dr':>6} {'ci':>15} {'Δ low':>7} "
        f"{'rows':>6}  reason"
    )
    lines = [header]
    for r in rows:
        ci = f"[{_number(r.ci_low)}, {_number(r.ci_high)}]" if r.ci_low is not None else "—"
        lines.append(
            f"{r.time:%Y-%m-%d %H:%M:%S}  {r.stage:<8} {r.candidate_version:<{width}} "
            f"{r.serving_version or '(none)':<{width}} {r.decision:<12} {_number(r.ips):>6} "
            f"{_number(r.snips):>6} {_number(r.dr):>6} {ci:>15} "
            f"{_number(r.difference_low):>7} {r.rows:>6}  {r.reason}"
        )
    return "\n".join(lines)


def ab_table(stats: Sequence[RewardStats]) -> str:
    if not stats:
        return "no rewarded interaction in the period"
    lines = [f"{'policy version':<48} {'rewards':>8} {'mean':>7} {'95% CI':>17}"]
    for s in stats:
        low, high = s.interval()
        lines.append(f"{s.version:<48} {s.n:>8} {s.mean:>7.3f} [{low:>6.3f}, {high:>6.3f}]")
    return "\n".join(lines)


def ab_plot(stats: Sequence[RewardStats], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = [s.mean for s in stats]
    halves = [s.interval()[1] - s.mean for s in stats]
    fig, axis = plt.subplots(figsize=(8, 4.5))
    axis.bar(range(len(stats)), means, yerr=halves, capsize=6, color="tab:blue", alpha=0.7)
    axis.set_xticks(range(len(stats)), [s.version for s in stats], rotation=20, ha="right")
    axis.set_ylabel("mean online reward (95% CI)")
    axis.set_title("recloop A/B: online reward by policy version")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
