"""A saved policy: TF-Agents' PolicySaver SavedModel plus recloop's metadata beside it.

The SavedModel is the canonical, portable artifact. `recloop_policy.json` records what the
SavedModel cannot: which agent and hyper-parameters produced it, which movie each action
means, and the version label served with every prediction.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from app import quiet
from app.linear import LinearState
from app.paths import join

METADATA_FILE = "recloop_policy.json"
# Per-arm policies: the movies they choose from and each movie's features (see Catalogue).
CATALOGUE_FILE = "recloop_catalogue.npz"
TRAINED_DIR = "policy"  # <artifacts_dir>/policy: what `recloop train` wrote last
# Per-arm runs are kept apart so that one never replaces the global policy the re-training
# loop works on (tests/test_trainer.py); `recloop serve` serves whichever was trained last
# (app/predictor/location.py).
TRAINED_PER_ARM_DIR = "policy-per-arm"
# The list-wise actor-critic's slate policy (`recloop train --agent actor_critic`): its
# observation is a liked-movie history, not a context, so it too never replaces `policy/`.
TRAINED_SLATE_DIR = "policy-slate"
DEPLOYED_DIR = "policies"  # <artifacts_dir>/policies/<version>, and CURRENT: what was deployed
POINTER = "CURRENT"
CANARY_FILE = "CANARY"  # <artifacts_dir>/policies/CANARY: an open canary (app/deployer/canary.py)
FORMAT = 1
_VARIABLE = re.compile(r"^(a|b|num_samples)_(\d+):0$")


class PolicyStoreError(RuntimeError):
    """A policy folder is missing or not one recloop wrote."""


@dataclass(frozen=True)
class PolicyMetadata:
    agent: str
    per_arm: bool
    num_actions: int
    rank_k: int
    alpha: float
    tikhonov_weight: float
    policy_version: str
    movie_ids: list[int] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    trained_interactions: int = 0
    format: int = FORMAT


@dataclass(frozen=True)
class Catalogue:
    """What a per-arm policy chooses from: the SavedModel knows only how to score arm
    features, so the movies and their features are saved beside it. Row i is catalogue
    index i (the logged action)."""

    movie_ids: np.ndarray  # movies, int64
    titles: list[str]
    features: np.ndarray  # movies × rank_k (the arm side of app.environment.interaction_features)

    def __post_init__(self) -> None:
        if not len(self.movie_ids) == len(self.titles) == len(self.features):
            raise PolicyStoreError(
                f"catalogue has {len(self.movie_ids)} movie ids, {len(self.titles)} titles "
                f"and {len(self.features)} feature rows; they must be one per movie"
            )
        if len(set(self.movie_ids.tolist())) != len(self.movie_ids):
            raise PolicyStoreError("catalogue movie ids must be distinct")


def catalogue_files(catalogue: Catalogue) -> dict[str, bytes]:
    """The catalogue as the file saved beside a per-arm policy (`save_tf_policy`'s `files`)."""
    out = io.BytesIO()
    np.savez_compressed(
        out,
        movie_ids=np.asarray(catalogue.movie_ids, dtype=np.int64),
        titles=np.array(catalogue.titles, dtype=np.str_),
        features=np.asarray(catalogue.features),
    )
    return {CATALOGUE_FILE: out.getvalue()}


def read_catalogue(directory: str) -> Catalogue:
    import tensorflow as tf

    path = join(directory, CATALOGUE_FILE)
    if not tf.io.gfile.exists(path):
        raise PolicyStoreError(f"{directory} holds a per-arm policy without {CATALOGUE_FILE}")
    with tf.io.gfile.GFile(path, "rb") as f:
        arrays = np.load(io.BytesIO(f.read()), allow_pickle=False)
        return Catalogue(
            arrays["movie_ids"].astype(np.int64),
            arrays["titles"].tolist(),
            arrays["features"].astype(np.float64),
        )


def save_tf_policy(
    policy,
    directory: str,
    metadata: PolicyMetadata,
    files: Mapping[str, bytes] | None = None,
    like: str | None = None,
) -> None:
    """Writes any TF-Agents policy (an agent's, or the slate actor's, app/slate/policy.py) and
    `files` beside it so that an interrupted save never leaves a folder that looks like a
    complete policy. Local folders are written beside and renamed into place. Object stores
    (gs://) cannot rename a prefix: there the metadata is the completeness marker, which every
    reader requires (`read_metadata`): an earlier policy's metadata is deleted before anything
    is overwritten and the new one is written last. Proved by
    tests/test_trainer.py::test_interrupted_training_leaves_the_last_policy and
    tests/test_trainer.py::test_an_interrupted_object_store_save_does_not_look_complete.
    `like`: a saved policy of the same agent and shapes (the warm start), whose saved graph
    this one reuses (`_save_variables_like`); PolicySaver.save when it does not match.
    Trainers call it through app/publish.py."""
    import tensorflow as tf
    from tf_agents.policies import policy_saver

    quiet.quiet_absl()
    local = "://" not in directory
    staging = directory.rstrip("/") + ".partial" if local else directory
    if local and os.path.exists(staging):
        shutil.rmtree(staging)
    if not local and tf.io.gfile.exists(join(directory, METADATA_FILE)):
        tf.io.gfile.remove(join(directory, METADATA_FILE))
    if not (like and _save_variables_like(like, policy, staging, metadata)):
        policy_saver.PolicySaver(policy, batch_size=None).save(staging)
    for name, data in (files or {}).items():
        with tf.io.gfile.GFile(join(staging, name), "wb") as f:
            f.write(data)
    with tf.io.gfile.GFile(join(staging, METADATA_FILE), "w") as f:
        f.write(json.dumps(asdict(metadata), indent=2))
    if not local:
        return
    replaced = directory.rstrip("/") + ".replaced"
    if os.path.exists(directory):
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(directory, replaced)
    os.replace(staging, directory)
    shutil.rmtree(replaced, ignore_errors=True)


# What PolicySaver.save writes beside variables/: the graph and the specs, the same for every
# policy of one agent and shapes (alpha and the Tikhonov weight are constants in the graph).
GRAPH_FILES = ("saved_model.pb", "policy_specs.pbtxt")
VARIABLES = "variables/variables"  # the checkpoint prefix inside a SavedModel
_GRAPH_FIELDS = ("agent", "per_arm", "num_actions", "rank_k", "alpha", "tikhonov_weight", "format")


def _save_variables_like(like: str, policy: Any, staging: str, metadata: PolicyMetadata) -> bool:
    """Writes `policy` as a PolicySaver SavedModel made of `like`'s saved graph and a fresh
    checkpoint of the policy's variables, if `like` is a recloop policy of the same agent,
    shapes and constants whose checkpoint holds the same variables (names, shapes, dtypes):
    what PolicySaver.save_checkpoint exists for ("update the policy without … saving multiple
    copies of the saved_model.pb file", tf_agents/policies/policy_saver.py), without tracing
    the policy's functions again. The checkpoint is the one save_checkpoint writes
    (model_variables and train_step, PolicySaver's default -1) and the fingerprint is computed
    anew. False (nothing kept) when `like` does not match. Proved by
    tests/test_publish.py::test_a_policy_saved_like_its_warm_start_is_the_policy_saver_policy."""
    import tensorflow as tf
    from tensorflow.python.saved_model import fingerprinting_utils

    try:
        shared = read_metadata(like)
    except PolicyStoreError:
        return False
    if any(getattr(shared, f) != getattr(metadata, f) for f in _GRAPH_FIELDS):
        return False
    if not all(tf.io.gfile.exists(join(like, name)) for name in GRAPH_FILES):
        return False
    checkpoint = tf.train.Checkpoint(
        model_variables=policy.variables(), train_step=tf.Variable(-1, dtype=tf.int64)
    )
    written = checkpoint.write(join(staging, VARIABLES))
    if _variables(written) != _variables(join(like, VARIABLES)):
        tf.io.gfile.rmtree(join(staging, "variables"))
        return False
    for name in GRAPH_FILES:
        tf.io.gfile.copy(join(like, name), join(staging, name), overwrite=True)
    tf.io.gfile.makedirs(join(staging, "assets"))  # PolicySaver's policies have none
    fingerprinting_utils.write_fingerprint(staging)
    return True


def _variables(prefix: str) -> dict[str, tuple[list[int], str]]:
    """A checkpoint's variables: key → (shape, dtype)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    return {k: (shape, dtypes[k].name) for k, shape in reader.get_variable_to_shape_map().items()}


def read_metadata(directory: str) -> PolicyMetadata:
    import tensorflow as tf

    path = join(directory, METADATA_FILE)
    if not tf.io.gfile.exists(path):
        raise PolicyStoreError(f"{directory} holds no recloop policy ({METADATA_FILE} is missing)")
    with tf.io.gfile.GFile(path) as f:
        payload = json.load(f)
    if payload.get("format") != FORMAT:
        raise PolicyStoreError(f"{path} has format {payload.get('format')}, expected {FORMAT}")
    return PolicyMetadata(**payload)


def linear_state_from_variables(variables: list[Any], num_actions: int) -> LinearState:
    return _linear_state(((v.name, v.numpy()) for v in variables), num_actions)


def read_linear_state(directory: str, num_actions: int) -> LinearState:
    """A saved linear policy's statistics, read from its checkpoint by variable name (the
    object graph the checkpoint stores names each one) without loading the SavedModel
    (tf.saved_model.load took ~0.7 s: benchmarks/quick.py)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(join(directory, VARIABLES))
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    named = (
        (f"{a.full_name}:0", reader.get_tensor(a.checkpoint_key))
        for node in graph.nodes
        for a in node.attributes
        if a.name == "VARIABLE_VALUE"
    )
    return _linear_state(named, num_actions)


def _linear_state(named: Iterable[tuple[str, np.ndarray]], num_actions: int) -> LinearState:
    found: dict[str, dict[int, np.ndarray]] = {"a": {}, "b": {}, "num_samples": {}}
    for name, value in named:
        match = _VARIABLE.match(name)
        if match:
            found[match.group(1)][int(match.group(2))] = np.asarray(value)
    for kind, arms in found.items():
        if sorted(arms) != list(range(num_actions)):
            raise PolicyStoreError(
                f"saved policy lacks linear variables {kind}_0…{kind}_{num_actions - 1}"
            )
    return LinearState(
        cov_matrix=np.stack([found["a"][k] for k in range(num_actions)]).astype(np.float64),
        data_vector=np.stack([found["b"][k] for k in range(num_actions)]).astype(np.float64),
        num_samples=np.array([float(found["num_samples"][k]) for k in range(num_actions)]),
    )
