"""Llama-style grouped-query attention: a key/value head goes with the query heads reading it."""
import torch

from torchslim.speedup import ModelSpeedup


def test_llama_gqa_prunes_whole_kv_groups(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    model = LlamaForCausalLM(cfg).eval()
    x = torch.randint(0, 64, (1, 8))
    mask = torch.ones(32, 64)
    mask[16:] = 0  # the value rows of key/value head 1 (query heads 2 and 3 read it)
    speedup = ModelSpeedup(model, {"input_ids": x, "use_cache": False},
                           {"model.layers.0.self_attn.v_proj": {"weight": mask}})
    speedup.speedup_model()  # checked against the masked model
    attn = model.model.layers[0].self_attn
    assert (attn.q_proj.out_features, attn.k_proj.out_features, attn.v_proj.out_features) == (32, 16, 16)
    assert attn.o_proj.in_features == 32
    with torch.no_grad():
        a = model(input_ids=x, use_cache=False).logits
        b = model(input_ids=torch.randint(0, 64, (1, 8)), use_cache=False).logits
    assert a.shape == (1, 8, 64) and not torch.allclose(a, b)  # the check was not vacuous
