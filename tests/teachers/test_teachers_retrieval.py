"""teachers/retrieval.py: where the retrieval teacher lives and the error that says how to
get one. (Training and loading one: tests/e2e/test_train_retrieval.py. Named
test_teachers_retrieval: tests/evaluation/test_retrieval.py tests the ranking metrics.)"""

import json

import ml_collections
import pytest

from tgt_jax.teachers import retrieval


def test_the_teacher_lives_in_its_dir_or_under_the_workdir():
  config = ml_collections.ConfigDict(dict(retrieval_teacher=dict(dir="")))
  assert retrieval.directory_of(config, "/runs/a") == "/runs/a/retrieval_teacher"
  config.retrieval_teacher.dir = "/teachers/r"
  assert retrieval.directory_of(config, "/runs/a") == "/teachers/r"


def test_a_missing_teacher_is_named_with_the_ways_to_get_one(tmp_path):
  assert not retrieval.exists(tmp_path)
  with pytest.raises(FileNotFoundError, match=f"No retrieval teacher at '{tmp_path}': "
                                              "retrieval_teacher.json is missing.*"
                                              "job=retrieval_teacher.*train_if_missing=True"):
    retrieval.read_meta(tmp_path)
  (tmp_path / retrieval.META_FILE).write_text(json.dumps({"temperature": 0.05}))
  assert retrieval.exists(tmp_path) and retrieval.read_meta(tmp_path) == {"temperature": 0.05}
