"""The options every verb shares (breastdx_core/cli_options.py) mean the same everywhere:
the same choices, read from breastdx_core/registry.py, on demo, summary, cv, compare and
report."""

from __future__ import annotations

import argparse

import pytest

from breastdx_cli import main
from breastdx_core import contract, registry

VERBS_WITH_DATA = ("demo", "summary", "cv", "compare", "report")
VERBS_WITH_MODEL = ("demo", "cv")


def _subparsers():
    parser = main.build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def _option(verb_parser, flag):
    [action] = [a for a in verb_parser._actions if flag in a.option_strings]
    return action


@pytest.mark.parametrize("verb", VERBS_WITH_DATA)
def test_data_options_have_one_set_of_choices(verb):
    verb_parser = _subparsers()[verb]
    assert tuple(_option(verb_parser, "--task").choices) == tuple(contract.TASKS)
    assert tuple(_option(verb_parser, "--layout").choices) == registry.LAYOUTS
    assert (
        _option(verb_parser, "--workdir").help == _option(_subparsers()["demo"], "--workdir").help
    )


@pytest.mark.parametrize("verb", VERBS_WITH_MODEL)
def test_backbone_choices_are_the_registrys(verb):
    assert tuple(_option(_subparsers()[verb], "--backbone").choices) == registry.BACKBONES


def test_an_unknown_backbone_is_refused_on_cv_as_on_demo(capsys):
    for verb in VERBS_WITH_MODEL:
        with pytest.raises(SystemExit) as exit_info:
            main.build_parser().parse_args([verb, "--backbone", "alexnet"])
        assert exit_info.value.code == 2
        assert "invalid choice: 'alexnet'" in capsys.readouterr().err
