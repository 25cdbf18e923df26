"""A LLaMA checkpoint loads straight into an fsdp x tensor mesh, same logits."""

import tempfile

from absl.testing import absltest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from flaxllm import configuration
from flaxllm import sharding
from flaxllm.models import decoder
from flaxllm.models import hf

VOCAB = 128  # divisible by the tensor axis


class ShardedLoadTest(absltest.TestCase):

  def test_fsdp_tensor_load_matches_one_device(self):
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            tie_word_embeddings=False,
        )
    )
    folder = tempfile.mkdtemp()
    model.save_pretrained(folder)

    mesh = sharding.make_mesh((1, 4, 2))
    rules = tuple(configuration.default_config().mesh.logical_axis_rules)
    ids = jnp.asarray(
        np.random.default_rng(0).integers(0, VOCAB, (2, 9)), jnp.int32
    )

    def mesh_shardings(config):
      boxed = jax.eval_shape(
          lambda: decoder.Decoder(config).init(jax.random.PRNGKey(0), ids)[
              'params'
          ]
      )
      return nn.logical_to_mesh_sharding(
          nn.get_partition_spec(boxed), mesh, rules
      )

    config, sharded = hf.load_pretrained(folder, shardings=mesh_shardings)
    _, single = hf.load_pretrained(folder)

    q_kernel = sharded['layers_0']['self_attn']['q_proj'][
        'kernel'
    ]  # [embed, heads, kv]
    self.assertEqual(
        q_kernel.addressable_shards[0].data.shape, (32 // 4, 4 // 2, 8)
    )
    head = sharded['lm_head']  # [embed, vocab]
    self.assertEqual(
        head.addressable_shards[0].data.shape, (32 // 4, VOCAB // 2)
    )

    apply = lambda params: decoder.Decoder(config).apply(
        {'params': params}, ids
    )
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      sharded_logits = jax.jit(apply)(sharded)
    single_logits = jax.jit(apply)(single)
    np.testing.assert_allclose(sharded_logits, single_logits, rtol=0, atol=1e-5)
    with torch.no_grad():
      want = model(torch.tensor(np.asarray(ids))).logits.numpy()
    np.testing.assert_allclose(single_logits, want, rtol=0, atol=1e-4)


if __name__ == '__main__':
  absltest.main()
