"""The tasks a student learns: each supplies its step, batches, evaluation and samples.

classification.py  images and text → classes (the TGT step of tgt.py as it is)
retrieval.py       queries → documents with a dual encoder (retrieval_step.py maps TGT onto it)
pretrain.py        masked-token pretraining of the text student (the pretrained baseline)
probe.py           exploration diagnostics and samples of logging steps
"""
