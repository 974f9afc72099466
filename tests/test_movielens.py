import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app import movielens
from app.movielens import MovieLensError
from tests.synthetic import real_movielens, requires_real_movielens


def make_zip(folder: Path) -> tuple[Path, str]:
    """An archive laid out like GroupLens' ml-100k.zip, served from a file:// URL."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ml-100k/u.data", "1\t1\t5\t0\n2\t3\t4\t0\n")
        archive.writestr(
            "ml-100k/u.item", "1|Toy Story (1995)|x\n2|GoldenEye (1995)|x\n3|Four Rooms (1995)|x\n"
        )
    path = folder / "ml-100k.zip"
    path.write_bytes(buffer.getvalue())
    return path, hashlib.sha256(buffer.getvalue()).hexdigest()


def test_ratings_matrix_matches_the_file(tmp_path: Path):
    data = tmp_path / "u.data"
    data.write_text("1\t2\t5\t0\n3\t1\t1\t0\n\n2\t2\t3\t0\n")
    matrix = movielens.load_ratings_matrix(data)
    expected = np.array([[0, 5], [0, 3], [1, 0]], dtype=float)
    np.testing.assert_array_equal(matrix, expected)


def test_ratings_matrix_equals_tf_agents_loader(movielens_dir: Path):
    from tf_agents.bandits.environments import dataset_utilities

    ours = movielens.load_ratings_matrix(movielens_dir / "u.data")
    theirs = dataset_utilities.load_movielens_data(str(movielens_dir / "u.data"), delimiter="\t")
    np.testing.assert_array_equal(ours, theirs[: ours.shape[0], : ours.shape[1]])
    assert not theirs[ours.shape[0] :].any() and not theirs[:, ours.shape[1] :].any()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1\t2\t5\n", "line 1: expected 4 tab-separated fields"),
        ("1,2,5,0\n", "line 1: expected 4 tab-separated fields"),
        ("1\t2\t5\t0\n1\tx\t5\t0\n", "line 2: invalid literal"),
        ("1\t2\t9\t0\n", "rating 9 is outside 1..5"),
        ("0\t2\t3\t0\n", "ids start at 1"),
        ("\n\n", "holds no ratings"),
    ],
)
def test_malformed_ratings_are_named(tmp_path: Path, content: str, message: str):
    data = tmp_path / "u.data"
    data.write_text(content)
    with pytest.raises(MovieLensError, match=message):
        movielens.load_ratings_matrix(data)


def test_titles_from_u_item(movielens_dir: Path):
    titles = movielens.load_titles(movielens_dir / "u.item", 3)
    assert titles == [
        "Synthetic Movie 1 (1995)",
        "Synthetic Movie 2 (1995)",
        "Synthetic Movie 3 (1995)",
    ]
    assert movielens.load_titles(None, 2) == ["Movie 1", "Movie 2"]


def test_locate_prefers_data_path_then_movielens_dir(movielens_dir: Path, tmp_path: Path):
    files = movielens.locate(data_path=str(movielens_dir / "u.data"), movielens_dir="/nowhere")
    assert files.ratings == movielens_dir / "u.data" and files.items == movielens_dir / "u.item"
    assert movielens.locate(movielens_dir=str(movielens_dir)).ratings == movielens_dir / "u.data"
    with pytest.raises(
        MovieLensError, match=r"MOVIELENS_DIR=/nowhere: /nowhere/u\.data does not exist"
    ):
        movielens.locate(movielens_dir="/nowhere", cache_dir=str(tmp_path))


def test_download_is_verified_cached_and_reused(tmp_path: Path):
    archive, digest = make_zip(tmp_path)
    cache = tmp_path / "cache"
    folder = movielens.fetch(cache, archive.as_uri(), digest)
    assert (folder / "u.data").read_text().startswith("1\t1\t5")
    # locate() finds the cached copy without downloading again (the URL is now unreachable).
    files = movielens.locate(cache_dir=str(cache), url="file:///nonexistent.zip")
    assert files.ratings == cache / "ml-100k" / "u.data"


def test_checksum_mismatch_is_refused_and_nothing_is_cached(tmp_path: Path):
    archive, _ = make_zip(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(MovieLensError, match="expected 0000; refusing"):
        movielens.fetch(cache, archive.as_uri(), "0000")
    assert not (cache / "ml-100k").exists()


def test_offline_without_a_copy_says_how_to_provide_one(tmp_path: Path):
    with pytest.raises(MovieLensError, match="set MOVIELENS_DIR to the ml-100k folder"):
        movielens.locate(cache_dir=str(tmp_path), url="file:///nonexistent/ml-100k.zip")
    with pytest.raises(MovieLensError, match="downloading is switched off"):
        movielens.locate(cache_dir=str(tmp_path), download=False)


@requires_real_movielens
def test_real_movielens_shape_and_titles():
    folder = real_movielens()
    assert folder is not None
    matrix = movielens.load_ratings_matrix(folder / "u.data")
    assert matrix.shape == (943, 1682) and np.count_nonzero(matrix) == 100_000
    assert movielens.load_titles(folder / "u.item", 1) == ["Toy Story (1995)"]


def test_missing_u_item_is_said_once():
    code = "from app import movielens\nfor _ in range(3): movielens.load_titles(None, 2)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stderr.count("u.item was not found") == 1, result.stderr
