"""engine/loop.py: what the loop decides before and around training (the steps themselves
run in every e2e test): checkpoints on disk, a run shorter than its checkpoint, and
non-finite terms refused by name."""

import types

import pytest

from tgt_jax.engine import loop


class _Checkpointer:
  """What the loop asks of a Checkpointer when it refuses to go on."""

  def __init__(self, directory, latest=None):
    self.directory, self.latest, self.waited = directory, latest, False

  def wait(self):
    self.waited = True

  def latest_step(self):
    return self.latest


def test_newest_step_on_disk_reads_step_directories_only(tmp_path):
  assert loop.newest_step_on_disk(tmp_path) == 0                   # no checkpoints/ yet
  for name in ("5", "40", "7", "40.orbax-checkpoint-tmp-1", "notes"):
    (tmp_path / "checkpoints" / name).mkdir(parents=True)
  assert loop.newest_step_on_disk(tmp_path) == 40


def test_a_run_shorter_than_its_checkpoint_is_refused_by_name(tmp_path):
  (tmp_path / "checkpoints" / "30").mkdir(parents=True)
  loop.refuse_shorter_run(tmp_path, 30)
  with pytest.raises(ValueError, match=r"num_train_steps=10 is below step 30 of the newest "
                                       r"labeler checkpoint in .*checkpoints"):
    loop.refuse_shorter_run(tmp_path, 10, name="labeler")


def test_train_returns_a_finished_state_untouched_and_refuses_a_shorter_total():
  finished = types.SimpleNamespace(step=8)
  fail = lambda *_: pytest.fail("a finished run must not step or read batches")
  schedule = loop.Schedule(total_steps=8, log_every=1, checkpoint_every=1)
  assert loop.train(finished, fail, fail, _Checkpointer("ck"), None, schedule, None) is finished
  with pytest.raises(ValueError, match="num_train_steps=5 is below step 8 of the newest vae"):
    loop.train(finished, fail, fail, _Checkpointer("ck"), None,
               loop.Schedule(5, 1, 1), None, name="vae")


def test_non_finite_terms_are_named_with_the_last_good_checkpoint():
  ckpt = _Checkpointer("/runs/a/checkpoints", latest=20)
  loop.check_finite({"loss": 1.0, "kl": 0.5}, 25, ckpt)
  assert not ckpt.waited
  with pytest.raises(FloatingPointError,
                     match=r"Non-finite labeler loss terms \['ce', 'kl'\] at step 25 "
                           r"\(ce=nan, kl=inf\).*step 20 in /runs/a/checkpoints"):
    loop.check_finite({"loss": 1.0, "kl": float("inf"), "ce": float("nan")}, 25, ckpt, "labeler")
  assert ckpt.waited                          # pending saves finish before the error


def test_the_schedule_of_a_config():
  config = types.SimpleNamespace(num_train_steps=9, log_every=2, checkpoint_every=3,
                                 eval_every=0)
  assert loop.Schedule.of(config) == loop.Schedule(9, 2, 3, 0)
