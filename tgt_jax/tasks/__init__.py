"""The tasks a student learns: each supplies its step, batches, evaluation and samples.

classification.py  images and text → classes (the TGT step of tgt.py as it is)
probe.py           classification's exploration diagnostics and samples of logging steps
retrieval.py       queries → documents with a dual encoder (retrieval_step.py maps TGT onto it)
pretrain.py        masked-token pretraining of the text student (the pretrained baseline)
synthesize.py      job=synthesize: x' and T(x') made once, offline, for a student to read

A task imports no other task; what several share has a module of its own:
method.py (the run's TGTConfig), cache.py (what job=synthesize and a student agree on),
pretrained_student.py (what job=pretrain writes and a fine-tune reads).
"""
