import pytest

from tools.cli import COMMANDS, TOP, main


@pytest.mark.parametrize("argv", [[g, c] for g, cmds in COMMANDS.items() for c in cmds] + [[t] for t in TOP])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    assert "usage: taxolens" in capsys.readouterr().out


def test_unknown_command_is_one_line(capsys):
    assert main(["classifier", "fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err
    assert main([]) == 0
