import json
import subprocess
import sys
from pathlib import Path

import pytest

from a2v_core.config_loader import load_config
from tests.helpers.cli import clis

ROOT = Path(__file__).resolve().parents[2]
A2V = [sys.executable, "-m", "pipelines.cli"]


def run(*args):
    return subprocess.run([*A2V, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_help_lists_existing_subcommands_only():
    out = run("--help")
    assert out.returncode == 0
    for cmd in (
        "synth",
        "manifest",
        "info",
        "pretrain",
        "finetune",
        "tune",
        "label",
        "evaluate",
        "demo",
    ):
        assert f"  {cmd} " in out.stdout
    import importlib

    from pipelines.cli import COMMANDS

    for module, _ in COMMANDS.values():
        assert callable(importlib.import_module(module).main)
    # every `a2v <job>` the README shows is a command (`a2v embed` once was not)
    import re

    shown = set(re.findall(r"^\s*a2v ([a-z]+) ", (ROOT / "README.md").read_text(), re.M))
    assert shown and shown <= set(COMMANDS), shown - set(COMMANDS)


def test_info_json_keys_and_values():
    out = run("info", "--config", "configs/pretrain/tiny.yaml", "--json")
    info = json.loads(out.stdout)
    for key in (
        "params_encoder",
        "params_student",
        "params_teacher",
        "frame_rate_hz",
        "receptive_field_ms",
        "frames_per_clip",
        "masked_fraction",
        "audio_s_per_step",
    ):
        assert key in info
    assert info["frame_rate_hz"] == 200.0 and info["frames_per_clip"] == 2000
    assert (
        abs(info["masked_fraction"] - 0.93) < 0.01
        and info["params_student"] > info["params_encoder"]
    )
    large = json.loads(run("info", "--config", "configs/pretrain/large.yaml", "--json").stdout)
    assert (
        large["receptive_field_ms"] == 37.75 and abs(large["params_encoder"] / 313.9e6 - 1) < 0.01
    )
    assert large["audio_s_per_step"] == 1000


def test_info_says_what_a_rate_preset_hears_and_costs():
    info = json.loads(
        run(
            "info", "--config", "configs/pretrain/tiny.yaml", "--sample-rate-hz", "48000", "--json"
        ).stdout
    )
    assert info["sample_rate_hz"] == 48000 and info["band_hz"] == [100.0, 24000.0]
    assert info["frame_rate_hz"] == 200 and info["frames_per_clip"] == 2000
    assert (info["sinc_taps"], info["sinc_stride"], info["conv_strides"]) == (155, 6, [5, 2, 2, 2])
    assert 1 < info["frontend_cost_vs_8khz"] < 2 and info["receptive_field_ms"] > 5
    text = run("info", "--config", "configs/pretrain/tiny.yaml", "--sample-rate-hz", "250000")
    assert "hears 10000-125000 Hz" in text.stdout and "receptive field" in text.stdout


def test_a_rate_without_a_preset_is_one_error_line_before_any_work():
    for args in (["--sample-rate-hz", "44100"], ["--set", "model.sample_rate_hz=44100"]):
        out = run("pretrain", "--config", "configs/pretrain/tiny.yaml", *args)
        assert out.returncode == 2, out.stderr
        lines = [x for x in out.stderr.splitlines() if x.strip()]
        assert lines[0] == "error: invalid config:" and len(lines) == 2, lines
        assert "model.sample_rate_hz 44100" in lines[1] and "nearest preset is 48000" in lines[1]
        assert "Started a local Ray" not in out.stdout + out.stderr


def test_bad_config_exits_2_naming_the_key():
    out = run("pretrain", "--config", "configs/pretrain/tiny.yaml", "--set", "optim.lr=-3")
    assert out.returncode == 2 and "optim.lr" in out.stderr
    out = run("pretrain", "--config", "configs/pretrain/tiny.yaml", "--set", "optim.nope=1")
    assert out.returncode == 2 and "optim.nope" in out.stderr and "allowed keys" in out.stderr
    out = run("frobnicate")
    assert out.returncode == 2


def test_synth_writes_archive(tmp_path):
    out = run("synth", "--out", str(tmp_path / "a"), "--hours", "0.02", "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "a/annotations.csv").exists() and list((tmp_path / "a").rglob("*.wav"))
    from pipelines import synth  # --dry-run: one recording of --file-s, whatever --hours says

    synth.main(["--out", str(tmp_path / "b"), "--hours", "5", "--file-s", "20", "--dry-run"])
    assert len(list((tmp_path / "b").rglob("*.wav"))) == 1


def test_dry_run_means_one_thing_for_every_job():
    """``run.dry_run`` is applied by the config itself (one step, every cadence 1; one file,
    two for fine-tuning's splits), so a job built in code or by a sweep means the same."""

    from a2v_core.config import FinetuneJob, LabelJob, PretrainJob
    from a2v_core.config_loader import load_config
    from pipelines.cli import COMMANDS
    from tune.space import load_sweep

    pre = load_config(PretrainJob, "configs/pretrain/tiny.yaml", ["run.dry_run=true"])
    assert pre.optim.max_steps == 1 and pre.run.checkpoint_every_steps == 1
    assert pre.dry_run_slice(["a", "b", "c"]) == ["a"]
    ft = FinetuneJob(run={"dry_run": True, "validate_every_steps": 9}, optim={"max_steps": 50})
    assert (ft.optim.max_steps, ft.run.validate_every_steps) == (1, 1)
    assert ft.dry_run_slice(["a", "b", "c"]) == ["a", "b"]
    assert LabelJob(run={"dry_run": True}).dry_run_slice([1, 2]) == [1]
    assert load_config(PretrainJob, "configs/pretrain/tiny.yaml", []).dry_run_slice([1, 2]) == [
        1,
        2,
    ]
    sweep = load_sweep(ROOT / "configs/tune/masking_focal.yaml")
    dry = sweep.dry_run()
    assert dry.name == f"{sweep.name}-dry-run" and dry.num_samples == 1
    assert all(d.type == "choice" and len(d.values) == 1 for d in dry.space.values())
    job = dry.finetune_job(dry.sample())
    assert job.run.dry_run and job.optim.max_steps == 1
    assert sweep.finetune_job(sweep.sample()).optim.max_steps > 1  # the original is untouched
    import importlib
    import io
    from contextlib import redirect_stdout

    for name, (module, _) in COMMANDS.items():  # every command takes the flag
        if name in ("info", "demo"):  # nothing to cut: info reads a config, demo is a tour
            continue
        buf = io.StringIO()
        try:
            with redirect_stdout(buf):
                importlib.import_module(module).main(["--help"])
        except SystemExit:
            pass
        assert "--dry-run" in buf.getvalue(), name


def test_errors_are_values_only_main_exits(capsys):
    """Library code raises ``JobError``s; only ``jobargs.command`` (around every command's
    ``main``) and the ``a2v`` dispatcher end the process."""
    import ast
    import importlib

    import pytest

    from a2v_core.errors import InputError, JobError, RunStopped
    from pipelines.cli import COMMANDS
    from pipelines.runtime.jobargs import command

    exits = []
    for path in sorted(
        [*ROOT.glob("a2v_core/*.py"), *ROOT.glob("pipelines/**/*.py"), *ROOT.glob("tune/*.py")]
    ):
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.id if isinstance(node, ast.Name) else None
            if name == "SystemExit":
                exits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # cli.main (an unknown command) and jobargs.command (every JobError), nothing else
    assert sorted({e.split(":")[0] for e in exits}) == [
        "pipelines/cli.py",
        "pipelines/runtime/jobargs.py",
    ]
    assert len(exits) == 2, exits
    for module, _ in COMMANDS.values():  # every command's main is wrapped
        assert hasattr(importlib.import_module(module).main, "__wrapped__"), module

    def boom(err):
        @command
        def main():
            raise err

        with pytest.raises(SystemExit) as exc:
            main()
        return exc.value.code, capsys.readouterr().err

    assert boom(InputError("--archive x: not found")) == (2, "error: --archive x: not found\n")
    assert boom(RunStopped("collapse at step 3")) == (1, "error: collapse at step 3\n")
    assert boom(JobError("all 4 trials failed"))[0] == 1
    with pytest.raises(KeyError):  # a bug keeps its traceback
        command(lambda: {}["x"])()


def test_every_config_key_of_every_job_says_what_it_means():
    """``a2v info --fields --job JOB`` lists what ``--set`` takes; no key without a meaning."""
    from a2v_core.config import JOBS
    from a2v_core.config_loader import field_docs

    for job, cls in JOBS.items():
        rows = field_docs(cls)
        assert rows, job
        assert not [key for key, _, _, text in rows if not text.strip()], job
    out = run("info", "--fields", "--job", "label")
    assert out.returncode == 0, out.stderr
    keys = {line.split()[0] for line in out.stdout.splitlines()[1:]}
    assert keys == {key for key, *_ in field_docs(JOBS["label"])}
    assert "events.threshold" in keys and "data.time_expansion" in keys


def test_every_flag_of_every_command_has_help_and_a2v_has_a_version(monkeypatch):
    """Each command's parser, caught as its ``main`` parses: no flag without help text."""
    import argparse
    import importlib

    from pipelines.cli import COMMANDS

    class Caught(Exception):
        pass

    parsers = {}

    def catch(self, *args, **kwargs):
        parsers[self.prog] = self
        raise Caught

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    for module, _ in COMMANDS.values():
        try:
            importlib.import_module(module).main([])
        except Caught:
            pass
    assert len(parsers) == len(COMMANDS), set(COMMANDS) - {p.split()[-1] for p in parsers}
    for prog, ap in parsers.items():
        bare = [a.dest for a in ap._actions if a.dest != "help" and not (a.help or "").strip()]
        assert not bare, (prog, bare)
    # one flag, one meaning: these flags have one help text wherever they appear
    helps: dict[str, set[str]] = {}
    for ap in parsers.values():
        for action in ap._actions:
            for flag in set(action.option_strings) & {
                "--threshold",
                "--address",
                "--set",
                "--embeddings",
            }:
                helps.setdefault(flag, set()).add(action.help)
    assert set(helps) == {"--threshold", "--address", "--set", "--embeddings"}, helps
    assert all(len(texts) == 1 for texts in helps.values()), helps
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("a2v 0.")


def test_a_training_job_without_config_runs_the_tiny_recipe_not_the_papers_schedule(capsys):
    import argparse

    from a2v_core.config import FinetuneJob, LabelJob, PretrainJob
    from pipelines.runtime.jobargs import resolve

    args = argparse.Namespace(config=None, overrides=[], dry_run=False)
    for cls, job in ((PretrainJob, "pretrain"), (FinetuneJob, "finetune")):
        got = resolve(cls, args, [])
        tiny = load_config(cls, ROOT / f"configs/{job}/tiny.yaml", [])
        assert got.optim.max_steps == tiny.optim.max_steps < cls().optim.max_steps
        assert f"no --config: the tiny recipe configs/{job}/tiny.yaml" in capsys.readouterr().out
    assert resolve(LabelJob, args, []).events.threshold == 0.15  # its defaults are its recipe


def test_every_relative_link_in_the_docs_resolves_inside_the_repository():
    import re

    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(docs) >= 6
    for md in docs:
        text = md.read_text()
        for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text):
            if re.match(r"^(https?:|mailto:|#)", target):
                continue
            path = (md.parent / target.split("#")[0]).resolve()
            assert path.exists(), (md.name, target)
            assert path.is_relative_to(ROOT), (md.name, target)
        assert "../shared" not in text, md.name  # nothing outside the repository
    assert len((ROOT / "README.md").read_text().splitlines()) <= 220


def test_tool_commands_have_typed_configs_their_flags_come_from(tmp_path):
    """index, search, report, manifest, synth: every flag is one field of the command's typed
    config (same default, same help), a bad value is one ``error:`` line naming the flag (exit
    2, before any work), and ``a2v info --fields`` lists the fields."""
    import importlib

    from a2v_core.config_tools import TOOLS
    from pipelines.runtime.jobargs import add_fields, parser

    for job, cls in TOOLS.items():
        ap = parser(f"a2v {job}", None)
        add_fields(ap, cls, "x")
        flags = {a.dest: a for a in ap._actions if a.dest not in ("help", "verbose")}
        assert set(flags) == set(cls.model_fields), job
        for name, field in cls.model_fields.items():
            assert field.description and flags[name].help, (job, name)
            assert flags[name].required == field.is_required(), (job, name)
            if not field.is_required() and field.annotation is not bool:
                assert flags[name].default == field.default, (job, name)
        main = importlib.import_module(f"pipelines.{job}").main
        assert "tool_config" in main.__wrapped__.__code__.co_names, job  # parsed into cls
    with pytest.raises(SystemExit):
        importlib.import_module("pipelines.index").main(["--out", "x"])  # --embeddings missing
    out = str(tmp_path / "never")
    clis(
        (["index", "--embeddings", out, "--out", out, "--connectivity", "1"], "--connectivity"),
        (["search", "--model", "m", "--query", "q", "--out", out], "exactly one of --embeddings"),
        (["report", "--model", "m", "--out", out, "--archive", out], "go together"),
        (["manifest", "--archive", out, "--out", out, "--time-expansion", "0"], "--time-expansion"),
        (["synth", "--out", out, "--hours", "0"], "--hours: Input should be greater than 0"),
    )
    assert not (tmp_path / "never").exists()
    listed = run("info", "--fields", "--job", "search")
    assert listed.returncode == 0, listed.stderr
    keys = {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert keys == set(TOOLS["search"].model_fields)


def test_pretraining_too_short_for_its_teacher_says_so_as_it_starts(tmp_path):
    """The EMA warning is one of the first lines, before any work (here: an archive that is
    not there), and names the share of the teacher still at its random initialisation."""
    args = ["pretrain", "--config", "configs/pretrain/tiny.yaml", "--archive", str(tmp_path)]
    args += ["--storage-path", str(tmp_path / "runs")]
    short = run(*args, "--max-steps", "100")
    assert "38% of the teacher at its random initialisation at step 100" in short.stdout
    assert short.returncode != 0 and "Started a local Ray" not in short.stdout + short.stderr
    assert "of the teacher" not in run(*args, "--max-steps", "1000").stdout
