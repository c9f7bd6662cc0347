"""umT5 text encoder: Wan key mapping, loading errors, numerics against the spec, tokenizer path, cache."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from inspatio_world.models.checkpoints import CheckpointError
from inspatio_world.models.text_encoder import (
    TextEncoderConfig,
    build_encoder_model,
    clean_prompt,
    hf_keys,
    load_text_encoder,
    wan_keys,
)

# text_len 12 reaches the logarithmic buckets (|k - q| >= 8 with 32 buckets).
TINY = TextEncoderConfig(vocab_size=64, dim=16, dim_attn=16, dim_ffn=24, num_heads=2, encoder_layers=2, text_len=12)
WORDS = ["a", "cat", "dog", "on", "the", "mat", "café", "&", "<b>"]
PAD, EOS, UNK = 0, 1, 2


def wan_shapes(c: TextEncoderConfig) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of a Wan `models_t5_umt5-xxl-enc` checkpoint, written out from the spec."""
    per_block = {
        "norm1.weight": (c.dim,),
        "attn.q.weight": (c.dim_attn, c.dim),
        "attn.k.weight": (c.dim_attn, c.dim),
        "attn.v.weight": (c.dim_attn, c.dim),
        "attn.o.weight": (c.dim, c.dim_attn),
        "pos_embedding.embedding.weight": (c.num_buckets, c.num_heads),
        "norm2.weight": (c.dim,),
        "ffn.gate.0.weight": (c.dim_ffn, c.dim),
        "ffn.fc1.weight": (c.dim_ffn, c.dim),
        "ffn.fc2.weight": (c.dim, c.dim_ffn),
    }
    shapes = {"token_embedding.weight": (c.vocab_size, c.dim), "norm.weight": (c.dim,)}
    shapes.update({f"blocks.{i}.{k}": s for i in range(c.encoder_layers) for k, s in per_block.items()})
    return shapes


def random_wan_state(c: TextEncoderConfig = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in wan_shapes(c).items():
        values = torch.randn(shape, generator=generator)
        if key.endswith("norm1.weight") or key.endswith("norm2.weight") or key == "norm.weight":
            values = 1 + 0.1 * values
        elif len(shape) == 2 and "embedding" not in key:
            values = values / math.sqrt(shape[1])
        state[key] = values
    return state


def reference_encoder(state: dict[str, torch.Tensor], c: TextEncoderConfig, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The Wan encoder written from the spec (fp32): pre-norm blocks, unscaled attention, gated tanh GELU."""
    batch, length = ids.shape
    heads, head_dim = c.num_heads, c.dim_attn // c.num_heads
    rel = torch.arange(length)[None, :] - torch.arange(length)[:, None]
    half, exact = c.num_buckets // 2, c.num_buckets // 4
    dist = rel.abs()
    far = exact + (torch.log(dist.float().clamp(min=1) / exact) / math.log(c.max_dist / exact) * (half - exact)).long()
    bucket = (rel > 0).long() * half + torch.where(dist < exact, dist, far.clamp(max=half - 1))

    def norm(x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c.eps))

    x = state["token_embedding.weight"][ids]
    for i in range(c.encoder_layers):
        w = {k.removeprefix(f"blocks.{i}."): v for k, v in state.items() if k.startswith(f"blocks.{i}.")}
        h = norm(x, w["norm1.weight"])
        q, k, v = (F.linear(h, w[f"attn.{n}.weight"]).view(batch, length, heads, head_dim).transpose(1, 2) for n in "qkv")
        scores = q @ k.transpose(-1, -2) + w["pos_embedding.embedding.weight"][bucket].permute(2, 0, 1)
        scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, -1)
        x = x + F.linear(attended, w["attn.o.weight"])
        h = norm(x, w["norm2.weight"])
        gated = F.gelu(F.linear(h, w["ffn.gate.0.weight"]), approximate="tanh") * F.linear(h, w["ffn.fc1.weight"])
        x = x + F.linear(gated, w["ffn.fc2.weight"])
    return norm(x, state["norm.weight"])


@pytest.fixture
def weights(tmp_path):
    state = random_wan_state()
    path = tmp_path / "umt5.safetensors"
    save_file(state, str(path))
    return path, state


def padded_batch(lengths: list[int], c: TextEncoderConfig = TINY) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.zeros(len(lengths), c.text_len, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, : n - 1] = torch.randint(3, c.vocab_size, (n - 1,), generator=generator)
        ids[row, n - 1] = EOS
        mask[row, :n] = 1
    return ids, mask


# ---- key mapping and loading ----------------------------------------------------------------


def test_every_wan_key_maps_to_distinct_hf_parameters_covering_the_model():
    model = build_encoder_model(TINY, device="meta")
    assert set(wan_keys(TINY)) == set(wan_shapes(TINY))
    mapped = [hf for key in wan_keys(TINY) for hf in hf_keys(key)]
    assert len(mapped) == len(set(mapped))
    assert set(mapped) == set(model.state_dict())
    assert hf_keys("token_embedding.weight") == ("shared.weight", "encoder.embed_tokens.weight")
    with pytest.raises(KeyError):
        hf_keys("blocks.0.attn.qkv.weight")


def test_default_config_has_the_spec_parameter_count():
    model = build_encoder_model(TextEncoderConfig(), device="meta")
    assert len(wan_keys(TextEncoderConfig())) == 242
    assert sum(p.numel() for p in model.parameters()) == 5_680_910_336


def test_weights_land_on_the_mapped_parameters_with_tied_embedding(weights):
    path, state = weights
    model = load_text_encoder(path, dtype=torch.float32, config=TINY).model
    loaded = model.state_dict()
    for key, value in state.items():
        for hf in hf_keys(key):
            assert torch.equal(loaded[hf], value), hf
    assert model.shared.weight is model.encoder.embed_tokens.weight


def test_bf16_encoder_is_bf16_throughout_wo_included(weights):
    path, state = weights
    model = load_text_encoder(path, dtype=torch.bfloat16, config=TINY).model
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    wo = model.encoder.block[1].layer[1].DenseReluDense.wo.weight
    assert torch.equal(wo, state["blocks.1.ffn.fc2.weight"].to(torch.bfloat16))


def test_fp32_output_matches_the_spec_reference_with_padding(weights):
    path, state = weights
    encoder = load_text_encoder(path, dtype=torch.float32, config=TINY)
    ids, mask = padded_batch([TINY.text_len, 4])
    got = encoder.encode_ids(ids, mask)
    want = reference_encoder(state, TINY, ids, mask)
    assert got.shape == (2, TINY.text_len, TINY.dim)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_pth_and_safetensors_load_the_same_weights(tmp_path, weights):
    path, state = weights
    pth = tmp_path / "umt5.pth"
    torch.save({"state_dict": state}, pth)  # Wan `.pth` files may wrap the weights
    ids, mask = padded_batch([5])
    from_safetensors = load_text_encoder(path, dtype=torch.float32, config=TINY).encode_ids(ids, mask)
    from_pth = load_text_encoder(pth, dtype=torch.float32, config=TINY).encode_ids(ids, mask)
    assert torch.equal(from_safetensors, from_pth)


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda s: s.pop("blocks.1.attn.k.weight"), "missing key 'blocks.1.attn.k.weight'"),
        (lambda s: s.update({"blocks.0.ffn.fc1.weight": torch.zeros(3, 3)}), "'blocks.0.ffn.fc1.weight' has shape (3, 3)"),
        (lambda s: s.update({"decoder.norm.weight": torch.zeros(TINY.dim)}), "unexpected key 'decoder.norm.weight'"),
    ],
)
def test_bad_checkpoint_names_file_and_wan_key(tmp_path, edit, named):
    state = random_wan_state()
    edit(state)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="bad.safetensors") as error:
        load_text_encoder(path, config=TINY)
    assert named in str(error.value)


def test_missing_weight_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.pth"):
        load_text_encoder(tmp_path / "nowhere.pth", config=TINY)


# ---- tokenizer, prompt_embeds and cache ------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A word-level tokenizer saved like a Hub folder: <pad>=0, </s>=1 appended to every prompt."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": PAD, "</s>": EOS, "<unk>": UNK, **{w: i + 3 for i, w in enumerate(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    folder = tmp_path_factory.mktemp("umt5-tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", pad_token="<pad>", unk_token="<unk>").save_pretrained(folder)
    return folder


@pytest.fixture
def text_encoder(weights, tokenizer_dir):
    encoder = load_text_encoder(weights[0], tokenizer_dir, dtype=torch.float32, config=TINY, cache_size=2)
    encoder.forward_calls = 0

    def count(*_):
        encoder.forward_calls += 1

    encoder.model.register_forward_hook(count)
    return encoder


def test_clean_prompt_fixes_text_unescapes_twice_and_collapses_whitespace():
    assert clean_prompt("  a\tcat \n\n on&amp;amp;the   mat ") == "a cat on&the mat"
    assert clean_prompt("cafÃ©") == "café"  # mojibake repaired by ftfy
    assert clean_prompt("&amp;lt;b&amp;gt;") == "<b>"


def test_tokenizer_appends_eos_and_pads_with_zero(text_encoder):
    ids, mask = text_encoder.tokenizer(["a cat on the mat"])
    assert ids.shape == mask.shape == (1, TINY.text_len)
    assert ids[0, :6].tolist() == [3, 4, 6, 7, 8, EOS]
    assert ids[0, 6:].eq(PAD).all() and mask[0].tolist() == [1] * 6 + [0] * 6


def test_tokenizer_truncates_keeping_eos(text_encoder):
    ids, mask = text_encoder.tokenizer([" ".join(["dog"] * 30)])
    assert ids.shape == (1, TINY.text_len)
    assert ids[0, -1] == EOS and mask.all()


def test_encode_zeroes_rows_from_seq_len_on(text_encoder):
    embeds = text_encoder.encode(["a  cat"])
    ids, mask = text_encoder.tokenizer(["a cat"])
    raw = text_encoder.encode_ids(ids, mask)
    assert embeds.shape == (1, TINY.text_len, TINY.dim) and embeds.dtype == torch.float32
    assert torch.equal(embeds[0, :3], raw[0, :3])
    assert embeds[0, 3:].eq(0).all() and raw[0, 3:].ne(0).any()


def test_cache_encodes_each_cleaned_prompt_once(text_encoder):
    first = text_encoder.encode(["a cat"])
    again = text_encoder.encode([" a \n cat "])  # cleans to the same text
    assert text_encoder.forward_calls == 1 and torch.equal(first, again)
    pair = text_encoder.encode(["a cat", "the dog"])
    assert text_encoder.forward_calls == 2 and torch.equal(pair[0], first[0])


def test_cache_evicts_least_recently_used(text_encoder):
    for prompt in ["a", "cat", "a", "dog", "a", "cat"]:  # size 2: "cat" is evicted by "dog"
        text_encoder.encode([prompt])
    assert text_encoder.forward_calls == 4


def test_cache_size_zero_always_runs_the_model(text_encoder):
    text_encoder.cache_size = 0
    text_encoder.encode(["a cat"])
    text_encoder.encode(["a cat"])
    assert text_encoder.forward_calls == 2
