"""Promotion of the tested pipeline templates to the prod registry (issue 8, defect 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.compile import compile_all
from pipelines.promote import PromotionError, main, promote_folder

DEV = "us-central1-docker.pkg.dev/recloop-dev/recloop"
PROD = "us-central1-docker.pkg.dev/recloop-prod/recloop"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def images(path: Path) -> set[str]:
    executors = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]
    return {e["container"]["image"] for e in executors.values()}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("compiled")
    compile_all(folder, f"{DEV}/trainer@{DIGEST}")
    return folder


def test_prod_templates_run_the_same_digest_from_the_prod_registry(compiled: Path, tmp_path: Path):
    from kfp.components import load_component_from_file

    written = promote_folder(compiled, tmp_path, DEV, PROD)
    assert sorted(p.name for p in written) == ["recloop-retraining.yaml", "recloop-startup.yaml"]
    for path in written:
        assert images(path) == {f"{PROD}/trainer@{DIGEST}"}
        original = yaml.safe_load((compiled / path.name).read_text())
        promoted = yaml.safe_load(path.read_text())
        assert promoted["root"] == original["root"]  # parameters and graph unchanged
        assert load_component_from_file(str(path)).name == original["pipelineInfo"]["name"]


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (f"{DEV}/trainer:latest", "by digest"),
        (f"docker.io/other/trainer@{DIGEST}", "not an image of"),
    ],
)
def test_a_template_the_build_did_not_make_is_refused_and_nothing_written(
    compiled: Path, tmp_path: Path, image: str, reason: str
):
    source = tmp_path / "source"
    source.mkdir()
    for path in compiled.glob("*.yaml"):
        (source / path.name).write_text(path.read_text())
    stray = source / "recloop-startup.yaml"
    stray.write_text(stray.read_text().replace(f"{DEV}/trainer@{DIGEST}", image, 1))
    with pytest.raises(PromotionError, match=reason):
        promote_folder(source, tmp_path / "out", DEV, PROD)
    assert not (tmp_path / "out").exists()


def test_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert (
        main(["--from-registry", DEV, "--to-registry", PROD, str(tmp_path), str(tmp_path / "o")])
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("promote: ") and len(err.strip().splitlines()) == 1


def test_compiling_and_promoting_again_gives_the_same_bytes(compiled: Path, tmp_path: Path):
    """deploy.yml re-runs compare a release path's files byte for byte with a new compile."""
    again = compile_all(tmp_path / "again", f"{DEV}/trainer@{DIGEST}")
    for path in again:
        assert path.read_bytes() == (compiled / path.name).read_bytes()
    first = promote_folder(compiled, tmp_path / "p1", DEV, PROD)
    second = promote_folder(tmp_path / "again", tmp_path / "p2", DEV, PROD)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
