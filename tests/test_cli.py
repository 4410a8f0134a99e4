import argparse
import subprocess
import sys

import pytest

import dgcnet
from dgcnet.cli import COMMANDS, build_parser, main
from dgcnet.cli.common import device, image_size


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert dgcnet.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "info" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "dgcnet", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"dgcnet {dgcnet.__version__}"


def test_info_r101_counts(capsys):
    assert main(["info", "--arch", "dgcnet_r101", "--size", "832x832"]) == 0
    out = capsys.readouterr().out
    assert "72,506,598" in out
    assert "67,776,723" in out
    assert "1.532 TFLOP" in out


def test_info_rejects_bad_size(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["info", "--size", "83a"])
    assert exit_info.value.code == 2
    assert "expected a size" in capsys.readouterr().err


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _all_parsers(sub)


def test_every_flag_has_both_spellings_and_is_listed_once() -> None:
    parser = build_parser()
    parsers = list(_all_parsers(parser))
    assert len(parsers) == 1 + len(COMMANDS)
    for p in parsers:
        for action in p._actions:
            longs = [s for s in action.option_strings if s.startswith("--")]
            assert len(longs) <= 1, (p.prog, longs)  # --help shows one spelling
            for option in longs:
                assert "_" not in option, (p.prog, option)  # the shown spelling has hyphens
                for spelling in (option, option.replace("-", "_")[:2].replace("_", "-") + option[2:].replace("-", "_")):
                    assert p._option_string_actions.get(spelling) is action, (p.prog, spelling)
                if "-" in option[2:]:
                    assert option[2:].replace("-", "_") in action.help, (p.prog, option)  # the alias is named


def test_same_things_have_the_same_names() -> None:
    """Flags every command shares are spelled alike; the old spellings stay aliases."""
    parsers = {p.prog.split()[-1]: p for p in _all_parsers(build_parser())}
    for command, flags in {
        "eval": ["--data-dir", "--data-list", "--restore-from", "--output-dir", "--save-pred", "--device"],
        "predict": ["--restore-from", "--output-dir", "--save-pred", "--format", "--device"],
        "train": ["--data-dir", "--data-list", "--restore-from", "--batch-size", "--save-dir", "--device"],
        "demo": ["--output-dir", "--out", "--batch-size", "--device"],
        "benchmark": ["--batch-size", "--device"],
        "synth": ["--output-dir", "--out"],
        "lists": ["--output-dir", "--out", "--data-dir", "--authors"],
        "check-data": ["--data-dir", "--data-list"],
        "export": ["--restore-from"],
    }.items():
        for flag in flags:
            assert flag in parsers[command]._option_string_actions, (command, flag)
    devices = {name: p._option_string_actions["--device"].type for name, p in parsers.items()
               if "--device" in p._option_string_actions}
    assert set(devices) >= {"eval", "predict", "train", "demo", "benchmark"}
    assert set(devices.values()) == {device}


@pytest.mark.parametrize("text, ok", [("cpu", True), ("cuda", True), ("cuda:3", True), ("auto", True),
                                      ("meta", False), ("cuda:", False), ("cuda:x", False), ("gpu", False)])
def test_device_choices(text: str, ok: bool) -> None:
    if ok:
        assert device(text) == text
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            device(text)


@pytest.mark.parametrize("text, size", [("832x832", (832, 832)), ("1024,2048", (1024, 2048)), ("769", (769, 769)),
                                        ("512X1024", (512, 1024))])
def test_sizes_are_written_alike(text: str, size: tuple[int, int]) -> None:
    assert image_size(text) == size
    parsers = {p.prog.split()[-1]: p for p in _all_parsers(build_parser())}
    for command in ("info", "synth", "export", "benchmark", "demo"):
        assert parsers[command]._option_string_actions["--size"].type is image_size


def test_port_flags_and_underscores_parse(tmp_path) -> None:
    parser = build_parser(["train", "eval"])
    args = parser.parse_args(["train", "--data_dir", "d", "--data-list", "l", "--restore_from", "w",
                              "--batch-size", "2", "--save_every", "5", "--device", "cuda:1"])
    assert (args.data_dir, args.data_list, args.restore_from, args.batch_size, args.save_every, args.device) == \
        ("d", "l", "w", "2", "5", "cuda:1")
    args = parser.parse_args(["eval", "--data_dir", "d", "--data_list", "l", "--restore_from", "w",
                              "--output_dir", "o", "--batch_tiles", "3", "--save_pred", "color"])
    assert (args.output_dir, args.batch_tiles, args.save_pred) == ("o", 3, ("color",))


_BLOCKED_IMPORTS = """
import builtins, sys
real_import = builtins.__import__
def blocked(name, globals=None, *args, **kwargs):
    importer = (globals or {}).get('__name__') or ''
    top = name.split('.')[0]
    if top in {BLOCKED} and (importer.startswith('dgcnet') or top != 'ctypes'):
        raise ImportError('blocked for the test: ' + name)
    return real_import(name, globals, *args, **kwargs)
builtins.__import__ = blocked
"""


def _run_blocked(blocked: set[str], code: str) -> subprocess.CompletedProcess:
    script = _BLOCKED_IMPORTS.replace("{BLOCKED}", repr(blocked)) + code
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


def test_help_imports_no_torch() -> None:
    out = _run_blocked({"torch", "numpy"}, "from dgcnet.cli import main\nraise SystemExit(main(['--help']))")
    assert out.returncode == 0, out.stderr
    assert "predict" in out.stdout


def test_import_without_unix_only_modules() -> None:
    """Where resource, fcntl or glibc's mallopt are missing (e.g. Windows), dgcnet still imports and runs.
    (ctypes is blocked for dgcnet's own imports only: torch needs it.)"""
    code = ("import dgcnet\nfrom dgcnet.cli import main\n"
            "from dgcnet.engine.heap import keep_freed_memory\nfrom dgcnet.models.fast import optimize_for_inference\n"
            "import dgcnet.benchmark, dgcnet.engine.train, dgcnet.formats.load\n"
            "assert keep_freed_memory() is False\n"
            "model = dgcnet.build_model('dgcnet_r18')\nprint(type(dgcnet.train).__name__)\n"
            "raise SystemExit(main(['--help']))")
    out = _run_blocked({"resource", "fcntl", "ctypes"}, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("function")
