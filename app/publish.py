"""One way to publish a trained policy: its version, metadata, PolicySaver SavedModel,
metrics.json and curves.

Every trainer ends here: the on-policy trainer (app/trainer/run.py), the off-policy trainer of
the re-training pipeline (app/loop/offpolicy.py), the actor-critic (app/slate/trainer.py,
app/slate/save.py) and any other agent whose policy is a TF-Agents policy. What is published
is agent-agnostic: a policy, its `PolicyMetadata`, a metrics dict and, optionally, curves to
plot and a per-arm policy's catalogue.

Publishing writes files; serving them is the deployer's step, never this one: `recloop deploy`
(app/deployer/pointer.py) or, in the re-training pipeline, app/loop/steps.py::run_deployer,
which keeps the exactly-once order stage → one ledger commit → pointer / Vertex deploy
(tests/test_ledger.py::test_publish_fault_then_restart).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.agents import AgentSpec
from app.paths import join
from app.policy_store import Catalogue, PolicyMetadata, catalogue_files, save_tf_policy

METRICS_FILE = "metrics.json"
PLOT_FILE = "training_curves.png"


def new_version() -> str:
    """A fresh version label: the UTC time, then a random suffix so two runs in one second
    never share a version (the pointer deployer stages each version once)."""
    return time.strftime("v%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{uuid.uuid4().hex[:6]}"


def version_for_run(run_id: str) -> str:
    """A run's policy version follows from its run id, so a restarted run publishes the same
    (tests/test_ledger.py::test_publish_fault_then_restart)."""
    return "v-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in run_id)


def bandit_metadata(
    spec: AgentSpec, version: str, titles: Sequence[str], trained_interactions: int
) -> PolicyMetadata:
    """The metadata of a bandit agent's policy. Global-feature policies choose among movies
    1..num_actions; per-arm policies choose from their catalogue, saved beside them."""
    return PolicyMetadata(
        agent=spec.name,
        per_arm=spec.per_arm,
        num_actions=spec.num_actions,
        rank_k=spec.context_dim,
        alpha=spec.alpha,
        tikhonov_weight=spec.tikhonov_weight,
        policy_version=version,
        movie_ids=[] if spec.per_arm else list(range(1, spec.num_actions + 1)),
        titles=[] if spec.per_arm else list(titles),
        trained_interactions=trained_interactions,
    )


@dataclass(frozen=True)
class Panel:
    """One curve of the plot; `smooth` adds its moving mean over about 1/30 of its length."""

    label: str
    values: Sequence[float]
    xlabel: str
    smooth: bool = True


@dataclass(frozen=True)
class Plot:
    title: str
    panels: Sequence[Panel]


@dataclass(frozen=True)
class Deferred:
    """A policy built as publishing's first step, said like the others: a linear learner's
    TF-Agents agent (TensorFlow's import included) takes seconds to build, which were silent
    after the progress bar (tests/test_publish.py::test_a_deferred_policy_is_built_as_a_step,
    tests/test_cli.py::test_a_training_run_prints_only_recloops_lines)."""

    what: str
    build: Callable[[], Any]


@dataclass(frozen=True)
class Published:
    policy_dir: str
    policy_version: str
    metrics_path: str


def publish(
    policy: Any | Deferred,
    policy_dir: str,
    metadata: PolicyMetadata,
    metrics: dict[str, Any],
    *,
    plot: Plot | None = None,
    catalogue: Catalogue | None = None,
    also: Sequence[tuple[str, Callable[[], object]]] = (),
    say: Callable[[str], None] | None = None,
    like: str | None = None,
) -> Published:
    """Writes the `also` reports, then the policy last, renamed into place with its
    metrics.json, curves and (per-arm) `catalogue` inside its folder: they appear together or
    not at all, so a run stopped while publishing leaves the previous policy with its own
    reports, never reports of a version that was not saved
    (tests/test_trainer.py::test_interrupted_training_leaves_the_last_policy,
    tests/test_cli.py::test_ctrl_c_while_saving_leaves_no_report_of_an_unsaved_policy), and
    each kind of policy (its own folder) keeps its own reports
    (tests/test_trainer.py::test_per_arm_run_keeps_the_servable_policy).

    metrics.json always names the agent, the version and the policy folder
    (tests/test_publish.py). `also` are further reports (name, writer) written before the
    policy; `say` hears each step. A `Deferred` policy is built as the first step. `like`: a
    published policy of the same agent and shapes (an off-policy run's warm start) whose saved
    graph the policy reuses, only its variables written (policy_store.save_tf_policy)."""

    def metrics_json() -> bytes:
        return json.dumps(
            {
                **metrics,
                "agent": metadata.agent,
                "policy_dir": policy_dir,
                "policy_version": metadata.policy_version,
            },
            indent=2,
        ).encode()

    # Rendered in the policy's step (a long run's curves take seconds to draw).
    reports: dict[str, Callable[[], bytes]] = {METRICS_FILE: metrics_json}
    if plot is not None:
        reports[PLOT_FILE] = lambda: plot_png(plot)
    steps = list(also)
    built: list[Any] = []
    if isinstance(policy, Deferred):
        steps.insert(0, (policy.what, lambda: built.append(policy.build())))
    else:
        built.append(policy)

    def save() -> None:
        inside = {name: render() for name, render in reports.items()}
        if catalogue is not None:
            inside.update(catalogue_files(catalogue))
        save_tf_policy(built[0], policy_dir, metadata, inside, like)

    steps.append((f"the policy with {' and '.join(reports)} ({policy_dir})", save))
    for step, (what, write) in enumerate(steps, 1):
        if say is not None:
            say(f"saving {step}/{len(steps)}: {what}")
        write()
    return Published(policy_dir, metadata.policy_version, join(policy_dir, METRICS_FILE))


def _writer(path: str, render: Callable[[], bytes]) -> Callable[[], None]:
    def write() -> None:
        import tensorflow as tf

        data = render()
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(data)

    return write


def plot_png(plot: Plot) -> bytes:
    """The panels one above the other, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(plot.panels), 1, figsize=(8, 3 * len(plot.panels)), squeeze=False)
    for axis, panel in zip(axes[:, 0], plot.panels, strict=True):
        values = np.asarray(panel.values, dtype=float)
        steps = np.arange(len(values))
        if panel.smooth:
            window = max(1, len(values) // 30)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            axis.plot(steps, values, alpha=0.3, label=f"{panel.label} per step")
            axis.plot(steps[window - 1 :], smooth, label=f"moving mean ({window} steps)")
            axis.legend(loc="best")
        else:
            axis.plot(steps, values)
        axis.set_ylabel(panel.label)
        axis.set_xlabel(panel.xlabel)
        axis.grid(alpha=0.3)
    axes[0, 0].set_title(plot.title)
    fig.tight_layout()
    return png_bytes(fig)


def png_bytes(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (then closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def save_png(fig: Any, path: str) -> None:
    """Writes a figure as a PNG through tf.io.gfile (so gs:// paths work), then closes it."""
    data = png_bytes(fig)
    _writer(path, lambda: data)()
