"""Teachers: what they are on disk, how they are trained, and which one a student gets.

generative.py (the VAE + labeler teacher on disk), components.py (E, G, T from three
part directories), text.py (the sequence VAE's objective and figures), retrieval.py
(the dual-encoder retrieval teacher), training.py (every teacher part on the
engine's loop, and the teacher job), loading.py (the student's teacher), pretrained.py
(a published AutoencoderKL as E and G with a BiT or timm labeler; not yet a teacher.kind).
"""
