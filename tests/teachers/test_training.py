"""teachers/training.py: where a teacher lives, the parts it can be asked to train, and the
do-nothing checkpointer of fits nobody resumes. (Training itself runs in tests/conftest.py's
tiny_teacher_dir and in the e2e tests.)"""

import ml_collections
import pytest

from tgt_jax.teachers import training


def test_the_teacher_lives_in_teacher_dir_or_under_the_workdir():
  config = ml_collections.ConfigDict(dict(teacher=dict(dir="")))
  assert training.teacher_dir(config, "/runs/a") == "/runs/a/teacher"
  assert training.run_dir_of("/runs/a/teacher") == "/runs/a/teacher/training"
  config.teacher.dir = "/teachers/t1"
  assert training.teacher_dir(config, "/runs/a") == "/teachers/t1"


@pytest.mark.parametrize("parts, named", [(("decoder",), r"\['decoder'\]"),
                                          ((), r"\['\(none\)'\]")])
def test_unknown_or_no_parts_are_named_before_any_work(parts, named):
  with pytest.raises(ValueError, match=f"Teacher parts {named}: a teacher has some of "
                                       r"\['generator', 'labeler'\]"):
    training.train(None, None, None, parts=parts)


def test_no_checkpoints_restores_nothing_and_saves_nothing():
  ckpt = training.NoCheckpoints()
  ckpt.save(3, object())
  assert ckpt.latest_step() is None and ckpt.directory is None
  assert ckpt.restore_latest_intact(object()) is None
