"""evaluation/classification.py: every accuracy figure in results.json, checked against arithmetic done by hand.

Conventions the code uses (and these tests pin down):
- per-class accuracy (= recall) of a class with no label in the split is NaN;
- balanced accuracy is the mean over classes that have labels (NaNs skipped), so a class that
  is only ever predicted costs nothing by itself, only through the recall of the true classes
  it steals from (sklearn.metrics.balanced_accuracy_score does the same);
- macro-F1 averages over classes present in `labels` only; sklearn's f1_score(average="macro")
  by default also counts a class that appears only in the predictions, as F1 = 0;
- a group accuracy (head/medium/tail) is the mean per-class accuracy of its classes that have
  labels, NaN when none has.
"""

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from tgt_jax import sharding
from tgt_jax.evaluation import classification as evaluation
from tgt_jax.data import subsets


def _a(*values):
  return np.asarray(values, np.int64)


# --- per-class and balanced accuracy ------------------------------------------------------------

def test_three_classes_seven_examples():
  labels = _a(0, 0, 1, 1, 1, 2, 2)
  preds = _a(0, 1, 1, 1, 0, 2, 2)
  # recalls: class 0 → 1 of 2 = 1/2; class 1 → 2 of 3 = 2/3; class 2 → 2 of 2 = 1
  np.testing.assert_allclose(evaluation.per_class_accuracy(preds, labels, 3), [1 / 2, 2 / 3, 1])
  # balanced: (1/2 + 2/3 + 1) / 3 = (13/6) / 3 = 13/18 = 0.7222
  assert evaluation.balanced_accuracy(preds, labels, 3) == pytest.approx(13 / 18)
  assert 13 / 18 == pytest.approx(0.7222, abs=1e-4)
  # plain accuracy: 5 of 7 = 0.7143
  assert evaluation.report(preds, labels, 3, {})["accuracy"] == pytest.approx(5 / 7)


def test_class_absent_from_predictions():
  labels = _a(0, 0, 1, 1, 2, 2)
  preds = _a(0, 0, 0, 1, 0, 1)          # class 2 is never predicted
  # recalls: 2/2, 1/2, 0/2 → balanced (1 + 1/2 + 0) / 3 = 1/2
  np.testing.assert_allclose(evaluation.per_class_accuracy(preds, labels, 3), [1, 0.5, 0])
  assert evaluation.balanced_accuracy(preds, labels, 3) == pytest.approx(0.5)


def test_class_absent_from_labels_is_skipped_not_counted_as_zero():
  labels = _a(0, 0, 0, 1)
  preds = _a(0, 2, 0, 1)                # class 2 has no label but is predicted once
  per_class = evaluation.per_class_accuracy(preds, labels, 3)
  # class 0 → 2 of 3; class 1 → 1 of 1; class 2 → no labels: NaN
  np.testing.assert_allclose(per_class[:2], [2 / 3, 1])
  assert np.isnan(per_class[2])
  # balanced over the 2 classes with labels: (2/3 + 1) / 2 = 5/6 = 0.8333 (not (2/3+1+0)/3)
  assert evaluation.balanced_accuracy(preds, labels, 3) == pytest.approx(5 / 6)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")     # sklearn warns about the predicted-only class
    assert skm.balanced_accuracy_score(labels, preds) == pytest.approx(5 / 6)


def test_all_wrong_and_all_right():
  labels = _a(0, 1, 2, 0, 1)
  wrong = _a(1, 2, 0, 2, 0)
  assert evaluation.per_class_accuracy(wrong, labels, 3) == [0.0, 0.0, 0.0]
  assert evaluation.balanced_accuracy(wrong, labels, 3) == 0.0
  assert evaluation.macro_f1(wrong, labels, 3) == 0.0          # every class: 0 hits → F1 = 0
  assert evaluation.balanced_accuracy(labels, labels, 3) == 1.0
  assert evaluation.macro_f1(labels, labels, 3) == 1.0
  out = evaluation.report(labels, labels, 3, {"head": [0], "tail": [1, 2]})
  assert out["accuracy"] == out["balanced_accuracy"] == out["macro_f1"] == 1.0
  assert out["head_accuracy"] == out["tail_accuracy"] == 1.0


def test_balanced_accuracy_is_plain_accuracy_on_a_balanced_split():
  labels = np.repeat(np.arange(4), 5)                  # 4 classes × 5 examples
  preds = labels.copy()
  preds[[0, 1, 7, 19]] = 3                             # 3 of the 20 become wrong (19 was 3 already)
  # recalls: 3/5, 4/5, 5/5, 5/5 → balanced 17/20; plain accuracy 17 of 20
  assert evaluation.balanced_accuracy(preds, labels, 4) == pytest.approx(17 / 20)
  assert np.mean(preds == labels) == pytest.approx(17 / 20)


def test_empty_split_gives_nan_not_an_error():
  empty = np.zeros((0,), np.int64)
  assert all(np.isnan(evaluation.per_class_accuracy(empty, empty, 3)))
  with pytest.warns(RuntimeWarning):                   # numpy: mean of an all-NaN slice
    assert np.isnan(evaluation.balanced_accuracy(empty, empty, 3))
  assert np.isnan(evaluation.macro_f1(empty, empty, 3))


# --- macro-F1 ------------------------------------------------------------------------------------

def test_macro_f1_by_hand():
  labels = _a(0, 0, 1, 1, 2, 2)
  preds = _a(0, 0, 0, 1, 0, 1)
  # F1 = 2·hits / (#true + #predicted):
  # class 0: hits 2, true 2, predicted 4 → 4/6 = 2/3
  # class 1: hits 1, true 2, predicted 2 → 2/4 = 1/2
  # class 2: hits 0 → 0
  # macro: (2/3 + 1/2 + 0) / 3 = (7/6) / 3 = 7/18 = 0.3889
  assert evaluation.macro_f1(preds, labels, 3) == pytest.approx(7 / 18)
  assert skm.f1_score(labels, preds, average="macro") == pytest.approx(7 / 18)


def test_macro_f1_skips_a_class_absent_from_labels():
  labels = _a(0, 0, 0, 1)
  preds = _a(0, 2, 0, 1)
  # class 0: hits 2, true 3, predicted 2 → 4/5; class 1: 2·1/(1+1) = 1; class 2: no labels, skipped
  # macro: (4/5 + 1) / 2 = 0.9.  sklearn's default also scores class 2 (F1 0): (4/5+1+0)/3 = 0.6
  assert evaluation.macro_f1(preds, labels, 3) == pytest.approx(0.9)
  assert skm.f1_score(labels, preds, average="macro", labels=[0, 1]) == pytest.approx(0.9)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    assert skm.f1_score(labels, preds, average="macro") == pytest.approx(0.6)


@pytest.mark.parametrize("seed", range(40))
def test_random_cases_match_sklearn(seed):
  rng = np.random.default_rng(seed)
  num_classes = int(rng.integers(2, 9))
  n = int(rng.integers(1, 80))
  labels = rng.integers(0, num_classes, n)
  # half the cases: predictions mostly right, so F1 is far from both 0 and 1
  preds = np.where(rng.uniform(size=n) < 0.6 * (seed % 2), labels, rng.integers(0, num_classes, n))
  present = np.unique(labels)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    want_f1 = skm.f1_score(labels, preds, average="macro", labels=present, zero_division=0)
    want_bal = skm.balanced_accuracy_score(labels, preds)
  assert evaluation.macro_f1(preds, labels, num_classes) == pytest.approx(want_f1, abs=1e-12)
  assert evaluation.balanced_accuracy(preds, labels, num_classes) == pytest.approx(want_bal,
                                                                                   abs=1e-12)
  if set(preds) <= set(labels):      # then sklearn's default class set is the same as ours
    assert evaluation.macro_f1(preds, labels, num_classes) == pytest.approx(
        skm.f1_score(labels, preds, average="macro"), abs=1e-12)


# --- head / medium / tail -----------------------------------------------------------------------

def _split_with_recalls(recalls, per_class=2):
  """Labels, `per_class` of each class, and predictions right on recalls[c]·per_class of them."""
  labels, preds = [], []
  for c, recall in enumerate(recalls):
    hits = int(round(recall * per_class))
    labels += [c] * per_class
    preds += [c] * hits + [(c + 1) % len(recalls)] * (per_class - hits)
  return np.asarray(preds), np.asarray(labels)


def test_head_medium_tail_on_a_long_tailed_count_vector():
  counts = [5, 50, 1, 12, 30, 2, 20, 1, 8, 2]
  # by count, largest first, ties by id: c1 50, c4 30, c6 20 | c3 12, c8 8, c0 5, c5 2 | c9 2, c2 1,
  # c7 1 → head (3 = 10//3) [1, 4, 6], medium [0, 3, 5, 8], tail [2, 7, 9] (c5 and c9 tie at 2:
  # the lower id goes first)
  groups = subsets.class_groups(counts)
  assert groups == {"head": [1, 4, 6], "medium": [0, 3, 5, 8], "tail": [2, 7, 9]}
  recalls = [1, 1, 0.5, 1, 1, 0.5, 0, 0.5, 1, 0]
  preds, labels = _split_with_recalls(recalls)
  out = evaluation.report(preds, labels, 10, groups)
  np.testing.assert_allclose(out["per_class_accuracy"], recalls)
  # head: c1 1, c4 1, c6 0 → 2/3; medium: c0 1, c3 1, c5 1/2, c8 1 → 3.5/4 = 0.875;
  # tail: c2 1/2, c7 1/2, c9 0 → 1/3; balanced: 6.5/10 = 0.65 (= plain accuracy: 13 of 20)
  assert out["head_accuracy"] == pytest.approx(2 / 3)
  assert out["medium_accuracy"] == pytest.approx(0.875)
  assert out["tail_accuracy"] == pytest.approx(1 / 3)
  assert out["balanced_accuracy"] == pytest.approx(0.65)
  assert out["accuracy"] == pytest.approx(13 / 20)


def test_group_accuracy_skips_classes_without_labels_and_is_nan_when_empty():
  labels = _a(0, 0, 1, 1)
  preds = _a(0, 1, 1, 1)
  # per class: c0 1/2, c1 1, c2 and c3 no labels (NaN)
  out = evaluation.report(preds, labels, 4, {"head": [0, 2], "medium": [], "tail": [2, 3]})
  assert out["head_accuracy"] == pytest.approx(0.5)       # c2 skipped: just c0
  assert np.isnan(out["medium_accuracy"])                  # no classes at all
  assert np.isnan(out["tail_accuracy"])                    # classes, but none with labels
  assert out["balanced_accuracy"] == pytest.approx(0.75)   # (1/2 + 1) / 2
  # two classes: class_groups leaves the medium group empty → NaN, not an error
  assert np.isnan(evaluation.report(preds, labels, 2, subsets.class_groups([3, 1]))[
      "medium_accuracy"])


def test_report_keys_and_types_are_json_ready():
  preds, labels = _split_with_recalls([1, 0.5, 0])
  out = evaluation.report(preds, labels, 3, subsets.class_groups([9, 5, 1]))
  assert set(out) == {"accuracy", "balanced_accuracy", "macro_f1", "per_class_accuracy",
                      "head_accuracy", "medium_accuracy", "tail_accuracy"}
  assert all(type(v) is float for k, v in out.items() if k != "per_class_accuracy")
  assert all(type(v) is float for v in out["per_class_accuracy"])


# --- prediction and evaluation over padded, sharded batches -------------------------------------

class _Split:
  def __init__(self, images):
    self.images = images

  def __len__(self):
    return len(self.images)


def _identity_model(mesh):
  """Rows are one-hot vectors and the model is the identity: it predicts the hot index."""
  return evaluation.make_predict(lambda params, x: x @ params, mesh), np.eye(5, dtype=np.float32)


@pytest.mark.parametrize("num_examples,batch_size", [(21, 16), (5, 16), (32, 16), (8, 8)])
def test_predict_drops_padding_and_keeps_order(num_examples, batch_size):
  """Row i is one-hot of i % 5, so its prediction is i % 5. The last batch is padded with
  row 0 (prediction 0); those rows must not come back."""
  mesh = sharding.make_mesh()
  predict_fn, params = _identity_model(mesh)
  split = _Split(np.eye(5, dtype=np.float32)[np.arange(num_examples) % 5])
  preds = evaluation.predict(predict_fn, params, split, batch_size, mesh)
  np.testing.assert_array_equal(preds, np.arange(num_examples) % 5)


def test_evaluate_counts_masked_rows_never():
  mesh = sharding.make_mesh()
  predict_fn, params = _identity_model(mesh)
  n, batch_size = 21, 16
  preds = np.arange(n) % 5                                 # what the model will say
  labels = preds.copy()
  labels[[0, 5]] = 1                                       # two class-1 examples predicted 0
  # padding: 11 rows predicted 1 but labelled 0 — counted, they would wreck class 0
  images = np.eye(5, dtype=np.float32)[np.concatenate([preds, np.ones(11, np.int64)])]
  all_labels = np.concatenate([labels, np.zeros(11, np.int64)])
  mask = np.arange(2 * batch_size) < n
  batches = [{"image": images[s], "label": all_labels[s], "mask": mask[s]}
             for s in (slice(0, 16), slice(16, 32))]
  out = evaluation.evaluate(predict_fn, params, batches, 5, {"head": [0, 1], "tail": [2, 3, 4]},
                            mesh)
  # labels per class: c0 rows 10, 15, 20 (3, all right); c1 rows 0, 1, 5, 6, 11, 16 (6, 4 right);
  # c2..c4 4 each, all right → recalls 1, 2/3, 1, 1, 1; balanced (4 + 2/3) / 5 = 14/15
  np.testing.assert_allclose(out["per_class_accuracy"], [1, 2 / 3, 1, 1, 1])
  assert out["balanced_accuracy"] == pytest.approx(14 / 15)
  assert out["accuracy"] == pytest.approx(19 / 21)
  # F1: c0 2·3/(3 + 5 predicted) = 3/4; c1 2·4/(6 + 4) = 4/5; c2..c4 1 → (0.75 + 0.8 + 3) / 5
  assert out["macro_f1"] == pytest.approx(0.91)
  assert out["head_accuracy"] == pytest.approx(5 / 6) and out["tail_accuracy"] == 1.0


def test_teacher_report_by_hand():
  """4 inputs, 2 classes: the labeler says [0, 1, 1, 1] on real inputs, the truth is [0, 1, 0, 1]."""
  def logits(labels):
    return np.eye(2)[np.asarray(labels)]
  out = {"logits": logits([0, 1, 1, 1]), "recon_logits": logits([0, 0, 0, 1]),
         "kl_nats": np.array([1.0, 2.0, 3.0, 6.0])}
  for i, sigma in enumerate(evaluation.LABEL_KEPT_SIGMAS):
    out[f"noisy_logits_{sigma}"] = logits([0, 1, 1, 1] if i == 0 else [1, 1, 1, 0])
  report = evaluation.teacher_report(out, np.array([0, 1, 0, 1]), 2)
  assert report["labeler_test_accuracy"] == pytest.approx((1 / 2 + 2 / 2) / 2)
  assert report["labeler_accuracy_on_reconstructions"] == pytest.approx((2 / 2 + 1 / 2) / 2)
  assert report["latent_kl_nats"] == pytest.approx(3.0)
  first, *rest = evaluation.LABEL_KEPT_SIGMAS
  assert report[f"label_kept_at_sigma_{first}"] == 1.0     # the labeler's own label, not the truth
  for sigma in rest:
    assert report[f"label_kept_at_sigma_{sigma}"] == 0.5
