"""teachers/kinds.py: the registry of teacher kinds, and what `teacher_for` gives a job
before anything is loaded (the kinds themselves: tests/teachers/test_loading.py,
test_components.py, test_pretrained.py, test_teachers_diffusion.py)."""

import types

import ml_collections
import pytest

from tgt_jax.teachers import kinds


def _config(**teacher):
  return ml_collections.ConfigDict(dict(teacher=dict(dir="", **teacher), eval_only=True))


def _method(alpha=0.0, lam=0.0, synthetic=False):
  return types.SimpleNamespace(alpha_eff=alpha, lam_eff=lam, uses_synthetic=synthetic)


def test_an_unknown_kind_lists_every_kind_with_what_it_is():
  with pytest.raises(ValueError, match=r"Unknown teacher.kind 'gan'; choose one of '' "
                                       r"\(trained by tgt_jax.*'diffusion' \(a class"):
    kinds.validate(_config(kind="gan"))
  assert kinds.kind_of(_config()) is kinds.KINDS[""]


def test_the_generator_is_loaded_only_for_methods_that_make_inputs():
  assert kinds.parts_needed(_method(synthetic=True)) == ("generator", "labeler")
  assert kinds.parts_needed(_method(synthetic=False)) == ("labeler",)


def test_a_method_without_teacher_terms_gets_the_empty_teacher():
  fail = lambda *_: pytest.fail("nothing may be read for a method without a teacher")
  teacher = kinds.teacher_for(_config(kind="gan"), _method(), fail, fail, fail)
  assert teacher == kinds.LoadedTeacher()


def test_eval_only_names_where_the_teacher_would_be_without_reading_it(tmp_path):
  teacher = kinds.teacher_for(_config(), _method(alpha=1.0), str(tmp_path), None, None)
  assert teacher.directory == str(tmp_path / "teacher") and teacher.meta is None
  assert teacher.params is None
