"""checkpointing.py: async save, keep-last-N, restore into the same layout."""

import jax
import numpy as np

from tgt_jax import checkpointing, sharding


def test_save_restore_and_keep_last(tmp_path):
  mesh = sharding.make_mesh()
  state = sharding.replicate(mesh, {"w": np.arange(6, dtype=np.float32), "step": np.int32(0)})
  ckpt = checkpointing.Checkpointer(tmp_path / "ckpt", max_to_keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, jax.tree.map(lambda x, s=step: x + s, state), {"step": step})
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3] and ckpt.latest_step() == 3
  restored, meta = ckpt.restore(state)
  np.testing.assert_array_equal(restored["w"], np.arange(6) + 3)
  assert meta == {"step": 3}
  assert restored["w"].sharding.is_fully_replicated
  earlier, _ = ckpt.restore(state, step=2)
  np.testing.assert_array_equal(earlier["w"], np.arange(6) + 2)
  ckpt.close()


def test_empty_directory_has_no_latest(tmp_path):
  ckpt = checkpointing.Checkpointer(tmp_path / "empty")
  assert ckpt.latest_step() is None
  ckpt.close()


def test_state_saved_on_eight_devices_restores_on_one(tmp_path):
  eight = sharding.make_mesh()
  one = sharding.make_mesh(jax.devices()[:1])
  ckpt = checkpointing.Checkpointer(tmp_path / "ckpt")
  ckpt.save(4, sharding.replicate(eight, {"w": np.ones(3, np.float32)}))
  ckpt.wait()
  restored, _ = ckpt.restore(sharding.replicate(one, {"w": np.zeros(3, np.float32)}))
  np.testing.assert_array_equal(restored["w"], 1.0)
  assert restored["w"].sharding.mesh.devices.size == 1
  ckpt.close()
