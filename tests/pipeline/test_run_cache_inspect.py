"""`eoid cache inspect`: the numbers on the terminal, and --out DIR / --png FILE written
where asked.
"""

from __future__ import annotations

import json

from click.testing import CliRunner
from PIL import Image

from eoid.cli import main


def test_out_writes_the_stats_json_and_the_grid_png_into_a_new_folder(
    synth_cache, tmp_path
):
    out = tmp_path / "inspect" / "deeper"
    result = CliRunner().invoke(
        main,
        ["cache", "inspect", str(synth_cache), "--out", str(out), "--samples", "4"],
    )
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    # 7 training images of the 10-image world
    assert stats["pairs"] > 0 and stats["images"] == 7
    assert f"images {stats['images']}, pairs {stats['pairs']}" in result.output
    with Image.open(out / "grid.png") as grid:  # 4 crops: a 2 x 2 grid
        assert grid.width > 0 and grid.height > 0
    assert (
        str(out / "stats.json") in result.output
        and str(out / "grid.png") in result.output
    )


def test_png_into_a_missing_folder_creates_it(synth_cache, tmp_path):
    png = tmp_path / "not" / "yet" / "grid.png"
    result = CliRunner().invoke(
        main,
        ["cache", "inspect", str(synth_cache), "--png", str(png), "--samples", "2"],
    )
    assert result.exit_code == 0, result.output
    assert png.is_file() and not (tmp_path / "not" / "yet" / "stats.json").exists()


def test_verify_finds_the_images_in_the_manifest_and_names_itself_when_they_moved(
    synth_cache, tmp_path
):
    manifest = json.loads((synth_cache / "manifest.json").read_text())
    annotations = manifest["config"]["data"]["train_annotations"]
    runner = CliRunner()
    result = runner.invoke(
        main, ["cache", "verify", str(synth_cache), "--annotations", annotations]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True
    result = runner.invoke(
        main, ["cache", "verify", str(synth_cache), "--images", str(tmp_path)]
    )
    assert result.exit_code == 1 and "cache verify --images DIR" in result.output
    assert (
        "--annotations FILE" in result.output and "cache-teacher" not in result.output
    )
