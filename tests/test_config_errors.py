"""Every config mistake is one line before any work or folder: unknown keys with the closest existing
ones (all of the command's at once), Lightning's Trainer arguments typed."""

from __future__ import annotations

import pytest

from tests.helpers import train


def error_lines(done) -> list[str]:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]


def test_every_unknown_key_of_the_command_is_named_with_the_closest_keys(tmp_path):
    done = train(tmp_path, "trainer.max_step=50", "datset=cqa", "debug=tiny", "dataset=cue_words")
    assert error_lines(done) == [
        "error: trainer.max_step is not a key of the config; did you mean trainer.max_steps or trainer.max_epochs? "
        "(a new key needs a +: +trainer.max_step=50)",
        "error: datset is not a key of the config; did you mean dataset? (a new key needs a +: +datset=cqa)",
    ]
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("override, expected", [
    ("trainer.max_steps=ten", "error: trainer.max_steps='ten' is not accepted; use an integer (-1: no limit) (Lightning's Trainer argument)"),
    ("trainer.val_check_interval=often", "error: trainer.val_check_interval='often' is not accepted; use a number of training batches"),
    ("trainer.accumulate_grad_batches=1.5", "error: trainer.accumulate_grad_batches=1.5 is not accepted; use an integer"),
])
def test_trainer_arguments_are_typed_before_any_work(tmp_path, override, expected):
    (line,) = error_lines(train(tmp_path, override, "debug=tiny", "dataset=cue_words"))
    assert line.startswith(expected)
    assert not (tmp_path / "outputs").exists()


def test_an_unquoted_list_for_the_configs_sweep_says_how_to_quote_it(tmp_path):
    (line,) = error_lines(train(tmp_path, "experiment=quickstart", "hydra.sweeper.params.seed=0,1"))
    assert line == ("error: hydra.sweeper.params.seed=0,1: a list for the config's sweep must be quoted, "
                    "\"hydra.sweeper.params.seed='0,1'\" (one shell argument), or sweep the key itself: seed=0,1")
