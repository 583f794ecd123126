"""The command line: options made from the config fields, --config files, help, logging."""

import logging
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import geocam.cli.run as cli_run
from geocam.cli import main
from geocam.cli.logs import RUN_LOG
from geocam.config import SceneConfig
from geocam.options import cli_specs
from geocam.training.config import EvaluateConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]

#: The flags users had before the options came from the config fields; none may go away.
FLAGS = {
    "run": (
        "--model --out --config --window-px --stride-px --grid --batch-size --bands --device "
        "--threads --mode --precision --reflectance-scale --level --l2a-path-radiance "
        "--radiometry-check --dn-offset --nodata --min-valid --block-px --threshold "
        "--min-probability --sieve-px --simplify-px --preview --overviews --max-windows "
        "--max-memory-mib --scheduler --force --chunk-px --quiet"
    ),
    "train": (
        "--config --data --root --split-dir --bands --init --download --epochs --batch-size "
        "--lr --seed --context-weight --consistency-weight --radiometric --workers --threads "
        "--precision --accelerator --limit-images --max-minutes --resume --out --model"
    ),
    "evaluate": "--data --root --split-file --split --out --batch-size --threads --device",
}


def _flags(command: click.Command) -> set[str]:
    return {o for p in command.params for o in p.opts if o.startswith("--")}


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_every_flag_users_had_is_still_there(name):
    assert set(FLAGS[name].split()) <= _flags(main.commands[name])


@pytest.mark.parametrize(
    "name, cls", [("run", SceneConfig), ("train", TrainConfig), ("evaluate", EvaluateConfig)]
)
def test_each_setting_is_an_option_named_after_its_field(name, cls):
    params = {p.name: p for p in main.commands[name].params}
    for spec in cli_specs(cls):
        assert spec.flag in params[spec.name].opts
        assert params[spec.name].default is None  # "not given": the config's default applies
        assert spec.setting.help in (params[spec.name].help or "")


@pytest.mark.parametrize("args", [[], ["run"], ["train"], ["evaluate"]])
def test_help_of_each_command(args):
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


@pytest.fixture
def captured(monkeypatch):
    """The SceneConfig `geocam run` would use, without running anything."""
    seen = {}

    def fake(scene, model_path, out_dir, config, *args):
        logging.getLogger("geocam.test").info("scoring %s", scene[0].name)
        seen["config"] = config
        if "fail" in out_dir.name:
            raise click.ClickException("failed")

    monkeypatch.setattr(cli_run, "_run_scenes", fake)
    return seen


def _run(tmp_path, *args):
    scene = tmp_path / "scene.tif"
    scene.touch()
    return CliRunner().invoke(main, ["run", str(scene), "--model", "m", *args])


def test_run_without_options_uses_the_config_defaults(tmp_path, captured):
    result = _run(tmp_path, "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert captured["config"] == SceneConfig()


def test_run_options_override_the_config_file(tmp_path, captured):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stride_px: 16\nthreshold: 0.3\nbands: B04=3,B03=2,B02=1\n")
    args = ["--config", str(cfg), "--threshold", "0.4", "--level", "l2a", "--no-preview"]
    result = _run(tmp_path, "--out", str(tmp_path / "o"), *args, "--dn-offset", "-1000")
    assert result.exit_code == 0, result.output
    config = captured["config"]
    assert (config.stride_px, config.threshold, config.level) == (16, 0.4, "L2A")
    assert str(config.bands) == "B04=3,B03=2,B02=1" and config.dn_offset == -1000.0
    assert config.preview is False


@pytest.mark.parametrize(
    "command, text, message",
    [
        ("run", "thresold: 0.3\n", "unknown setting `thresold`; did you mean `threshold`?"),
        ("run", "threshold: high\n", "`threshold`='high' must be a number in [0, 1]"),
        ("train", "root: r\nout_dir: o\nepoch: 3\n", "unknown setting `epoch`; did you mean"),
        ("train", "root: r\nout_dir: o\nlr: fast\n", "`lr`='fast' must be a number > 0"),
    ],
)
def test_a_bad_yaml_key_is_one_line_and_exit_2(tmp_path, command, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    args = ["--config", str(cfg)]
    if command == "run":
        (tmp_path / "s.tif").touch()
        args = [str(tmp_path / "s.tif"), "--model", "m", "--out", str(tmp_path / "o"), *args]
    result = CliRunner().invoke(main, [command, *args])
    assert result.exit_code == 2
    assert result.output == f"geocam: error: {cfg}: {message}" + result.output.split(message)[1]
    assert result.output.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_bad_option_values_are_usage_errors(tmp_path, captured):
    result = _run(tmp_path, "--out", str(tmp_path / "o"), "--bands", "B04=x")
    assert result.exit_code == 2 and "Invalid value for '--bands'" in result.output
    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "missing --root" in result.output


def test_run_appends_a_log_to_out(tmp_path, captured):
    out = tmp_path / "o"
    assert _run(tmp_path, "--out", str(out)).exit_code == 0
    assert _run(tmp_path, "--out", str(out), "-q").exit_code == 0
    text = (out / RUN_LOG).read_text()
    assert text.count("scoring scene.tif") == 2 and "geocam 0.1.0: " in text


def test_a_failed_run_in_a_new_folder_leaves_nothing(tmp_path, captured):
    result = _run(tmp_path, "--out", str(tmp_path / "fail"))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert not (tmp_path / "fail").exists()
    (tmp_path / "fail").mkdir()
    assert _run(tmp_path, "--out", str(tmp_path / "fail")).exit_code == 1
    assert "failed: ClickException: failed" in (tmp_path / "fail" / RUN_LOG).read_text()


def test_the_run_path_loads_no_lightning():
    code = (
        "import sys, geocam, geocam.cli, geocam.training.config\n"
        "heavy = [m for m in ('lightning', 'torchgeo', 'lightning.pytorch') if m in sys.modules]\n"
        "print(' '.join(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_readme_option_tables_are_current():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/options_table.py"), "--check"],
        capture_output=True,
        check=False,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "geocam.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0 and "run" in done.stdout


@pytest.fixture
def trained(monkeypatch):
    """The TrainConfig `geocam train` would train with, without Lightning."""
    import types

    seen = {}

    def train(cfg, progress=True):
        seen.update(cfg=cfg, progress=progress)
        test = {"overall_accuracy": 1.0, "n": 1}
        return {"model": str(cfg.model_file), "epochs": 1, "wall_time_s": 0.0, "test": test}

    monkeypatch.setitem(sys.modules, "geocam.training.fit", types.SimpleNamespace(train=train))
    return seen


def test_train_without_options_uses_the_config_defaults(tmp_path, trained):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--root", "r", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    cfg = trained["cfg"]
    assert cfg == TrainConfig(root=Path("r"), out_dir=out, command=cfg.command)
    assert trained["progress"] is False and (out / "train.log").is_file()


def test_train_options_override_the_yaml_file(tmp_path, trained):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"root: r\nout_dir: {tmp_path / 'run'}\nepochs: 5\nlr: 0.01\nbands: [b04]\n")
    result = CliRunner().invoke(main, ["train", "--config", str(cfg), "--lr", "0.5"])
    assert result.exit_code == 0, result.output
    got = trained["cfg"]
    assert (got.epochs, got.lr, got.bands, got.root) == (5, 0.5, ("B04",), Path("r"))
    assert trained["progress"] is True
