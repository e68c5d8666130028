"""Teachers: what they are on disk, how they are trained, and which one a job gets.

kinds.py (the registry of teacher kinds and `teacher_for`, what every job calls),
loading.py (how each kind validates and loads), generative.py (the VAE + labeler teacher
on disk), training.py (every teacher part on the engine's loop, and the teacher job),
components.py (E, G, T from three part directories), pretrained.py (a published
AutoencoderKL as E and G with a BiT or timm labeler), report.py (job=teacher_report),
text.py (the sequence VAE's objective and figures), retrieval.py (the dual-encoder
retrieval teacher). Every directory a teacher job writes follows the artifact rule
(engine/artifacts.py).
"""
