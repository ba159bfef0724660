"""The embedder command line: help, bad flags, train --out, evaluate."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from embedder.cli import build_parser, main
from tests.conftest import ROOT
from tests.embedder.conftest import NEWEST_FIRST, OLD_LEFTOVERS, YOUNG_LEFTOVERS, make_artifacts


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "embedder", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["bundles"]])
def test_every_command_has_help(command):
    result = _run(*command, "--help")
    assert result.returncode == 0
    assert "usage:" in result.stdout


def test_help_and_bad_flags_answer_without_loading_numpy_or_pandas():
    code = """
import sys
from embedder.cli import main
for argv in (["train", "--help"], ["train", "--dim", "x"]):
    try:
        main(argv)
    except SystemExit:
        pass
print("loaded:", sorted(name for name in ("numpy", "pandas", "torch") if name in sys.modules))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.splitlines()[-1] == "loaded: []"


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--dim", "0", "greater than or equal to 1, got 0"),
        ("--epochs", "-1", "greater than or equal to 1, got -1"),
        ("--epochs", "ten", "invalid int value: 'ten'"),
        ("--lr", "nan", "finite number, got nan"),
        ("--lr", "fast", "invalid float value: 'fast'"),
        ("--reg", "-0.5", "greater than or equal to 0, got -0.5"),
        ("--sample-dim", "0", "greater than or equal to 1, got 0"),
        ("--sweeps", "2.5", "invalid int value: '2.5'"),
        ("--burn-in", "-3", "greater than or equal to 0, got -3"),
        ("--val-fraction", "0.5", "less than 0.5, got 0.5"),
        ("--init-std", "0", "greater than 0, got 0.0"),
        ("--sample-init-std", "-1", "greater than 0, got -1.0"),
        ("--threads", "-1", "greater than or equal to 0, got -1"),
        ("--method", "sgd", "invalid choice: 'sgd'"),
        ("--device", "tpu", "invalid choice: 'tpu'"),
    ],
)
def test_bad_flag_values_are_refused_naming_the_flag(flag, value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and message in err


def test_every_config_field_is_a_flag_with_its_description_as_help():
    from embedder.config import TrainConfig

    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    flags = {action.dest: action for action in train._actions}
    for name, field in TrainConfig.model_fields.items():
        assert flags[name].help == f"{field.description} (default: {field.default})", name
    # A flag not given stays out of the namespace: the config's own default applies, and
    # the command knows which flags were given (to say which the method ignores).
    given = vars(build_parser().parse_args(["train", "--dim", "8", "--no-refit"]))
    assert (
        given["dim"] == 8
        and given["refit"] is False
        and not set(TrainConfig.model_fields) - {"dim", "refit"} & given.keys()
    )
    assert flags["tolerance"].help.startswith("(gibbs) Stop sampling once doubling the samples")


def test_a_burn_in_as_long_as_the_chain_is_refused_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--sweeps", "10", "--burn-in", "10"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--burn-in" in err and "below sweeps (10)" in err


def test_train_flags_reach_the_manifest(tmp_path, synthetic_csv):
    out = tmp_path / "adam"
    args = [
        "train",
        "--data",
        synthetic_csv,
        "--out",
        str(out),
        "--method",
        "adam",
        "--dim",
        "4",
        "--epochs",
        "2",
    ]
    assert (
        main(args + ["--no-refit", "--init-std", "0.1", "--val-fraction", "0.2", "--threads", "0", "--quiet"])
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    config = manifest["config"]
    assert (
        config["method"],
        config["refit"],
        config["init_std"],
        config["val_fraction"],
        config["threads"],
    ) == ("adam", False, 0.1, 0.2, 0)
    assert manifest["training"]["refit"] is False and manifest["training"]["unit"] == "epoch"


def test_the_evaluate_floor_default_matches_the_evaluate_module():
    from embedder import cli
    from search import evaluate

    assert cli.DEFAULT_MIN_RATINGS == evaluate.DEFAULT_MIN_RATINGS


def test_unknown_dataset_name_is_a_clear_error(capsys):
    assert main(["train", "--data", "ml-7m", "--quiet"]) == 2
    assert "ml-7m" in capsys.readouterr().err


def test_missing_bundle_is_a_clear_error(tmp_path, capsys):
    assert main(["evaluate", "--bundle", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_train_out_writes_there_and_leaves_current_alone(tmp_path, synthetic_csv, caplog, capsys):
    artifacts = tmp_path / "artifacts"
    out = tmp_path / "mine"
    # --epochs and --lr belong to adam: gibbs (the default) trains, and says it ignores them.
    args = [
        "train",
        "--data",
        synthetic_csv,
        "--out",
        str(out),
        "--artifacts",
        str(artifacts),
        "--dim",
        "4",
        "--epochs",
        "2",
        "--lr",
        "0.1",
        "--sweeps",
        "5",
        "--quiet",
    ]
    assert main(args) == 0
    assert (out / "manifest.json").is_file()
    assert not (artifacts / "current").exists()
    ignored = [r.getMessage() for r in caplog.records if "ignores it" in r.getMessage()]
    assert ignored == [
        "--epochs is read by --method adam only; gibbs ignores it",
        "--lr is read by --method adam only; gibbs ignores it",
    ]
    assert "earlier version" not in capsys.readouterr().err
    assert main(args) == 0  # again: the first bundle is kept beside the new one, and the command says so
    assert capsys.readouterr().err.endswith(
        f"1 earlier version(s) kept beside it: `python -m embedder bundles --bundle {out} --keep 1` removes them\n"
    )


def test_train_without_out_publishes_and_moves_current(tmp_path, synthetic_csv, capsys):
    artifacts = tmp_path / "artifacts"
    args = [
        "train",
        "--data",
        synthetic_csv,
        "--artifacts",
        str(artifacts),
        "--dim",
        "4",
        "--sweeps",
        "5",
        "--quiet",
    ]
    assert main(args) == 0
    first = (artifacts / "current").resolve()
    assert main(args + ["--seed", "5"]) == 0
    second = (artifacts / "current").resolve()
    assert first != second and first.is_dir() and second.is_dir()
    out = capsys.readouterr().out
    assert "test RMSE" in out and "wall time" in out


def test_evaluate_reproduces_the_manifest(tiny_bundle, capsys):
    assert main(["evaluate", "--bundle", tiny_bundle, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    manifest = json.loads((Path(tiny_bundle) / "manifest.json").read_text())
    assert report["metrics"]["test"]["rmse"] == pytest.approx(manifest["metrics"]["test"]["rmse"], abs=1e-6)
    assert report["quality"]["rating"]["model"]["rmse"] == pytest.approx(
        manifest["metrics"]["test"]["rmse"], abs=1e-6
    )


def test_evaluate_prints_the_quality_tables_with_the_chosen_floor(tiny_bundle, capsys):
    assert main(["evaluate", "--bundle", tiny_bundle, "--min-ratings", "50"]) == 0
    out = capsys.readouterr().out
    for text in (
        "test_rmse",
        "biases",
        "popularity",
        "NDCG@10",
        "coverage",
        "genre Jaccard",
        "min_ratings 50",
        "run python -m search build",
    ):
        assert text in out, text


def test_bundles_lists_one_line_per_entry_then_the_leftovers(tmp_path, capsys):
    artifacts = make_artifacts(tmp_path)
    assert main(["bundles", "--artifacts", str(artifacts)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == NEWEST_FIRST + ["notes", "alias"]
    line = dict(zip(NEWEST_FIRST + ["notes", "alias"], lines))
    assert "2026-04-01 00:00:00 UTC" in line["c-newest"] and line["c-newest"].endswith("test RMSE 0.9300")
    assert "2025-12-01 00:00:00 UTC" in line["e-no-created"]
    assert line["b-newer"].endswith("no test RMSE")
    assert line["a-oldest"].endswith("test RMSE 0.9000  <- current")
    assert sum("current" in text for text in lines[:-1]) == 1
    assert line["notes"].endswith("not a bundle") and line["alias"].endswith(
        f"link to {tmp_path / 'elsewhere'} (not followed)"
    )
    assert lines[-1].startswith("staging leftovers: ")
    assert all(f"{name} (" in lines[-1] for name in OLD_LEFTOVERS | YOUNG_LEFTOVERS)
    assert "bundles/.f-crashed.tmp-old00001 (2 h old)" in lines[-1] and ".old-" not in lines[-1]


def test_bundles_json_is_a_list_of_the_same_rows(tmp_path, capsys):
    artifacts = make_artifacts(tmp_path)
    assert main(["bundles", "--artifacts", str(artifacts), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows[:7]] == NEWEST_FIRST + ["notes", "alias"]
    first = rows[NEWEST_FIRST.index("a-oldest")]
    assert first == {
        "name": "a-oldest",
        "path": str(artifacts / "bundles" / "a-oldest"),
        "kind": "bundle",
        "created": "2026-01-01T00:00:00+00:00",
        "bytes": first["bytes"],
        "own_bytes": first["bytes"],  # no hard links between these bundles
        "test_rmse": pytest.approx(0.9),
        "current": True,
    }
    assert first["bytes"] > 0 and rows[1]["test_rmse"] is None
    assert [row["current"] for row in rows].count(True) == 1
    assert {row["kind"] for row in rows[7:]} == {"staging leftover"} and len(rows) == 12


def test_bundles_keep_prints_what_it_removed(tmp_path, capsys):
    artifacts = make_artifacts(tmp_path)
    assert main(["bundles", "--artifacts", str(artifacts), "--keep", "2"]) == 0
    out = capsys.readouterr().out
    for text in (
        "removed bundles/d-middle (bundle created 2026-02-01 00:00:00 UTC, ",
        "removed bundles/e-no-created (bundle created 2025-12-01 00:00:00 UTC, ",
        "removed bundles/.f-crashed.tmp-old00001 (staging leftover, 2 h old)",
        "removed .current.tmp-old00002 (staging leftover, 3 h old)",
        "kept bundles/notes (not a bundle: never deleted)",
        "kept bundles/alias (a link: never followed)",
        "kept 3 bundle(s): c-newest, b-newer, a-oldest (current)",
    ):
        assert text in out, text
    assert re.search(
        r"kept bundles/\.h-slow\.tmp-active01 \(staging leftover, \d+ s old: a writer may still be using it\)",
        out,
    )
    assert {path.name for path in (artifacts / "bundles").iterdir() if not path.name.startswith(".")} == {
        "c-newest",
        "b-newer",
        "a-oldest",
        "notes",
        "alias",
    }
    assert main(["bundles", "--artifacts", str(artifacts), "--keep", "2"]) == 0
    assert capsys.readouterr().out.startswith("nothing removed\n")


def test_bundles_keep_json_names_the_removed_and_the_kept(tmp_path, capsys):
    artifacts = make_artifacts(tmp_path)
    assert main(["bundles", "--artifacts", str(artifacts), "--keep", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    removed = {row["name"] for row in report["removed"]}
    assert removed == {
        "b-newer",
        "d-middle",
        "e-no-created",
        ".f-crashed.tmp-old00001",
        ".current.tmp-old00002",
    }
    assert [row["name"] for row in report["kept"] if row["kind"] == "bundle"] == ["c-newest", "a-oldest"]


def test_bundles_of_a_named_bundle_lists_and_prunes_its_versions(tmp_path, capsys):
    from embedder.bundle import Bundle, update_bundle
    from tests.conftest import random_bundle

    mine = random_bundle(tmp_path / "mine", seed=1)
    built = [update_bundle(mine, {}, {"note": f"build {n}"}) for n in (1, 2)]
    random_bundle(tmp_path / "other", seed=2)
    assert main(["bundles", "--bundle", str(mine)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [built[1].name, built[0].name, lines[2].split()[0], "mine"]
    assert lines[0].endswith("<- current") and sum("current" in line for line in lines) == 1
    assert lines[3].endswith(f"link to {built[1].name} (not followed)")
    assert main(["bundles", "--bundle", str(mine), "--keep", "2"]) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith(f"removed {lines[2].split()[0]} (bundle created ")
        and f"kept 2 bundle(s): {built[1].name} (current), {built[0].name}" in out
    )
    assert Bundle.load(mine).manifest["note"] == "build 2" and (tmp_path / "other").is_dir()
    with pytest.raises(SystemExit):
        main(["bundles", "--bundle", str(mine), "--artifacts", str(tmp_path)])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["bundles", "--bundle", str(tmp_path / "gone")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'gone'}: no bundle there\n"


@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "must be at least 1, got 0"),
        ("-2", "must be at least 1, got -2"),
        ("two", "expected a whole number, got 'two'"),
        ("1.5", "expected a whole number, got '1.5'"),
    ],
)
def test_bundles_keep_refuses_a_bad_count_naming_the_flag(tmp_path, value, message, capsys):
    artifacts = make_artifacts(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["bundles", "--artifacts", str(artifacts), "--keep", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--keep" in err and message in err
    assert {name for name in NEWEST_FIRST if (artifacts / "bundles" / name).is_dir()} == set(NEWEST_FIRST)


@pytest.mark.parametrize("extra", [[], ["--keep", "1"], ["--json"]])
def test_bundles_of_a_missing_artifacts_folder_is_one_error_line(tmp_path, extra, capsys):
    assert main(["bundles", "--artifacts", str(tmp_path / "nowhere"), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1 and "nowhere" in captured.err


def test_a_written_bundle_that_does_not_load_is_never_made_current(
    tmp_path, synthetic_csv, monkeypatch, capsys
):
    import embedder.export as export
    from embedder.bundle import Bundle

    artifacts = tmp_path / "artifacts"
    train = [
        "train",
        "--data",
        synthetic_csv,
        "--artifacts",
        str(artifacts),
        "--dim",
        "4",
        "--sample-dim",
        "2",
        "--sweeps",
        "20",
        "--quiet",
    ]
    assert main(train) == 0
    before = Bundle.load(artifacts / "current").path
    written = export.export_bundle

    def damaged(*args, **kwargs):  # as a bug in the writer would leave it
        path, manifest = written(*args, **kwargs)
        (path / "movie_biases.npy").write_bytes(b"not the array")
        return path, manifest

    monkeypatch.setattr(export, "export_bundle", damaged)
    capsys.readouterr()
    assert main(train) == 2
    err = capsys.readouterr().err
    assert "the bundle just written does not load (movie_biases.npy: checksum mismatch" in err
    assert err.splitlines()[-1].startswith("error: ") and err.splitlines()[-1].endswith(
        f"{artifacts / 'current'} was left as it was"
    )
    assert Bundle.load(artifacts / "current").path == before


def test_constant_ratings_are_refused_before_training(tmp_path, capsys):
    data = tmp_path / "same.csv"
    data.write_text(
        "user_id,movie_id,rating\n" + "".join(f"{u},{m},4\n" for u in range(1, 21) for m in range(1, 31))
    )
    assert main(["train", "--data", str(data), "--artifacts", str(tmp_path / "artifacts"), "--quiet"]) == 2
    assert "same.csv: every rating is 4, so there is nothing to learn" in capsys.readouterr().err
    assert not (tmp_path / "artifacts").exists()


def test_out_naming_a_folder_that_is_not_a_bundle_is_refused_before_training(tmp_path, synthetic_csv, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"cat")
    assert main(["train", "--data", synthetic_csv, "--out", str(photos), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "photos: is a folder but not a bundle (no manifest.json); refusing to replace it" in captured.err
    assert "data:" not in captured.err and sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


RUN_COMMAND = """
import argparse, sys
from embedder.checks import run_command

def handler(args):
    if args.fail:
        raise ValueError("bad value 'x'")
    for n in range(200_000):  # far more than a pipe holds: the write meets the closed end
        print(n)
    return 0

sys.exit(run_command(argparse.Namespace(handler=handler, fail=sys.argv[1] == "fail"), (ValueError,)))
"""


def test_run_command_prints_a_user_error_as_one_line_and_returns_2():
    result = subprocess.run(
        [sys.executable, "-c", RUN_COMMAND, "fail"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (2, "", "error: bad value 'x'\n")


def test_run_command_returns_1_quietly_when_the_reader_goes_away():
    # As `python -m embedder bundles | head -1` or `python -m search similar ... | head -1`.
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_COMMAND, "print"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout.readline() == b"0\n"
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr) == (1, b"")
