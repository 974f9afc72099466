"""MovieLens 100K: locate, download (verified), cache and parse.

The data set's licence forbids redistribution, so recloop never ships it: it reads a folder
the user points at (`MOVIELENS_DIR` or a `--data-path` to `u.data`), or downloads GroupLens'
official zip once, checks its SHA-256 and keeps it in the cache directory.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("recloop.movielens")

URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
ARCHIVE_FOLDER = "ml-100k"
RATINGS_FILE = "u.data"
ITEMS_FILE = "u.item"


class MovieLensError(RuntimeError):
    """The data set is missing, unreadable or malformed."""


@dataclass(frozen=True)
class MovieLensFiles:
    ratings: Path
    items: Path | None


def locate(
    data_path: str | None = None,
    movielens_dir: str | None = None,
    cache_dir: str = "~/.cache/recloop",
    download: bool = True,
    url: str = URL,
) -> MovieLensFiles:
    """Finds u.data (and u.item beside it), downloading the official zip if allowed."""
    if data_path:
        ratings = Path(data_path).expanduser()
        if ratings.is_dir():
            ratings = ratings / RATINGS_FILE
        return _files(ratings, f"--data-path {data_path}")
    if movielens_dir:
        return _files(
            Path(movielens_dir).expanduser() / RATINGS_FILE, f"MOVIELENS_DIR={movielens_dir}"
        )
    folder = Path(cache_dir).expanduser() / ARCHIVE_FOLDER
    if not (folder / RATINGS_FILE).is_file():
        if not download:
            raise MovieLensError(
                f"MovieLens 100K is not in {folder} and downloading is switched off; "
                "set MOVIELENS_DIR to a folder holding u.data and u.item"
            )
        fetch(folder.parent, url)
    return _files(folder / RATINGS_FILE, f"the cache {folder}")


def _files(ratings: Path, origin: str) -> MovieLensFiles:
    if not ratings.is_file():
        raise MovieLensError(
            f"{origin}: {ratings} does not exist (expected MovieLens 100K's u.data)"
        )
    items = ratings.with_name(ITEMS_FILE)
    return MovieLensFiles(ratings=ratings, items=items if items.is_file() else None)


def fetch(cache_dir: Path, url: str = URL, sha256: str = SHA256) -> Path:
    """Downloads the archive, verifies it and unpacks it into `cache_dir/ml-100k`."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            payload = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise MovieLensError(
            f"could not download MovieLens 100K from {url} ({err}); without internet access, "
            "download ml-100k.zip elsewhere, unzip it and set MOVIELENS_DIR to the ml-100k folder"
        ) from err
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise MovieLensError(f"{url} has SHA-256 {digest}, expected {sha256}; refusing to use it")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as staging:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            archive.extractall(staging)
        # Move into place only once complete, so an interrupted run leaves no half folder.
        Path(staging, ARCHIVE_FOLDER).replace(cache_dir / ARCHIVE_FOLDER)
    return cache_dir / ARCHIVE_FOLDER


def load_ratings_matrix(path: Path) -> np.ndarray:
    """Dense users × movies matrix of ratings (0 where unrated), ids shifted to 0-based.

    Same contents as TF-Agents' `dataset_utilities.load_movielens_data` for u.data; the shape
    follows the largest ids in the file so that small synthetic files work too.
    """
    rows = load_rating_events(path)
    matrix = np.zeros((rows[:, 0].max(), rows[:, 1].max()))
    matrix[rows[:, 0] - 1, rows[:, 1] - 1] = rows[:, 2]
    return matrix


def load_rating_events(path: Path) -> np.ndarray:
    """u.data's rows as an int64 array of (user id, item id, rating, timestamp), ids 1-based.

    The sequential (slate) environment needs the timestamps that the bandits' matrix drops.
    """
    try:
        raw = path.read_text(encoding="latin-1").splitlines()
    except OSError as err:
        raise MovieLensError(f"cannot read {path}: {err}") from err
    rows = np.empty((len(raw), 4), dtype=np.int64)
    count = 0
    for number, line in enumerate(raw, start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise MovieLensError(
                f"{path} line {number}: expected 4 tab-separated fields "
                f"(user id, item id, rating, timestamp), got {len(fields)}"
            )
        try:
            user, item, rating, timestamp = (int(v) for v in fields)
        except ValueError as err:
            raise MovieLensError(f"{path} line {number}: {err}") from err
        if user < 1 or item < 1:
            raise MovieLensError(
                f"{path} line {number}: ids start at 1, got user {user}, item {item}"
            )
        if not 1 <= rating <= 5:
            raise MovieLensError(f"{path} line {number}: rating {rating} is outside 1..5")
        rows[count] = (user, item, rating, timestamp)
        count += 1
    if count == 0:
        raise MovieLensError(f"{path} holds no ratings")
    return rows[:count]


@functools.cache
def _say_titles_missing() -> None:
    """Once per process (tests/test_movielens.py::test_missing_u_item_is_said_once)."""
    log.warning("u.item was not found beside u.data: movies are titled 'Movie N'")


def load_titles(path: Path | None, num_movies: int) -> list[str]:
    """Titles of movies 1..num_movies from u.item; a placeholder where none is known."""
    titles = [f"Movie {i + 1}" for i in range(num_movies)]
    if path is None:
        _say_titles_missing()
        return titles
    for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        fields = line.split("|")
        if len(fields) < 2 or not fields[0].isdigit():
            raise MovieLensError(f"{path} line {number}: expected 'movie id|title|…'")
        movie_id = int(fields[0])
        if 1 <= movie_id <= num_movies:
            titles[movie_id - 1] = fields[1]
    return titles
