"""Training checkpoints that resume exactly where a killed run stopped.

Vertex AI restarts a pre-empted custom-training job with the same command and the same
AIP_CHECKPOINT_DIR. Every `checkpoint_every` loops (and at the end) the trainer writes
`ckpt-<loops done>/` there: the learner's state (for linear agents the float64 numpy state and
its sampling RNG; for the others a tf.train.Checkpoint of the agent), and `progress.json`
with the environment's RNG state and the metrics so far. A restarted run continues from the
newest complete checkpoint and ends with the same policy and metrics as a run that was never
interrupted (tests/test_trainer_checkpoint.py::test_a_killed_trainer_resumes_to_the_same_result,
which SIGKILLs a real `python -m app.trainer`).

Writing is atomic: on a local disk the folder is written under a staging name and renamed
into place; on an object store (gs://, where renaming a folder copies it object by object)
`progress.json` is written last and a folder without it is not a checkpoint. A run killed
while writing leaves nothing a restart would read
(tests/test_trainer_checkpoint.py::test_an_unfinished_checkpoint_is_ignored).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from app.environment import MovieLensBandit, MovieLensPerArmBandit
from app.paths import join
from app.trainer.learners import Learner
from app.trainer.metrics import History

PROGRESS_FILE = "progress.json"
FORMAT = 1
KEEP = 2  # the newest complete checkpoints kept; older ones are removed
_FOLDER = re.compile(r"^ckpt-(\d+)$")
STAGING_PREFIX = ".staging-"

Environment = MovieLensBandit | MovieLensPerArmBandit


class Checkpoints:
    """The checkpoints of one training run in `directory`.

    `run` names what must not change between a run and its resumption (agent, data,
    hyper-parameters, seed); a checkpoint written by another run is refused, naming the
    difference, rather than silently continued."""

    def __init__(self, directory: str, run: Mapping[str, Any]):
        self.directory = directory.rstrip("/")
        self.run = dict(run)

    def latest(self) -> tuple[int, str] | None:
        """(loops done, folder) of the newest complete checkpoint."""
        import tensorflow as tf

        if not tf.io.gfile.isdir(self.directory):
            return None
        done = []
        for name in tf.io.gfile.listdir(self.directory):
            match = _FOLDER.match(name.rstrip("/"))
            folder = join(self.directory, name.rstrip("/"))
            if match and tf.io.gfile.exists(join(folder, PROGRESS_FILE)):
                done.append((int(match.group(1)), folder))
        return max(done) if done else None

    def restore(self, learner: Learner, env: Environment) -> History:
        """The metrics so far, with `learner` and `env` as they were; empty if none."""
        import tensorflow as tf

        found = self.latest()
        if found is None:
            return History()
        _, folder = found
        with tf.io.gfile.GFile(join(folder, PROGRESS_FILE)) as f:
            progress = json.load(f)
        if progress.get("format") != FORMAT:
            raise ValueError(f"{folder}: checkpoint format {progress.get('format')}, not {FORMAT}")
        differences = [
            f"{key}={progress['run'].get(key)!r} (this run: {value!r})"
            for key, value in self.run.items()
            if progress["run"].get(key) != value
        ]
        if differences:
            raise ValueError(
                f"the checkpoint in {folder} belongs to another run: {', '.join(differences)}; "
                "resume with the same arguments or use an empty checkpoint directory"
            )
        learner.load(folder)
        env.rng.bit_generator.state = progress["environment_rng"]
        history = History.from_json(progress["history"])
        history.seconds = float(progress["seconds"])
        return history

    def save(self, learner: Learner, env: Environment, history: History) -> str:
        """Writes a checkpoint of the run after `len(history.loops)` loops; returns its folder."""
        import tensorflow as tf

        loops = len(history.loops)
        final = join(self.directory, f"ckpt-{loops:08d}")
        if tf.io.gfile.exists(join(final, PROGRESS_FILE)):
            return final  # this exact state is already saved (a resumed run's first save)
        local = "://" not in self.directory
        folder = join(self.directory, f"{STAGING_PREFIX}{uuid.uuid4().hex}") if local else final
        tf.io.gfile.makedirs(folder)
        learner.save(folder)
        progress = {
            "format": FORMAT,
            "loops": loops,
            "run": self.run,
            "environment_rng": env.rng.bit_generator.state,
            "history": history.to_json(),
            "seconds": history.seconds,
        }
        with tf.io.gfile.GFile(join(folder, PROGRESS_FILE), "w") as f:
            f.write(json.dumps(progress))
        if local:
            if tf.io.gfile.exists(final):  # a torn folder of a run killed while renaming
                tf.io.gfile.rmtree(final)
            tf.io.gfile.rename(folder, final)
        self._prune()
        return final

    def _prune(self) -> None:
        """Removes all but the newest KEEP complete checkpoints, and abandoned staging folders."""
        import tensorflow as tf

        names = [n.rstrip("/") for n in tf.io.gfile.listdir(self.directory)]
        complete = sorted(n for n in names if _FOLDER.match(n))
        stale = complete[:-KEEP] + [n for n in names if n.startswith(STAGING_PREFIX)]
        for name in stale:
            tf.io.gfile.rmtree(join(self.directory, name))
