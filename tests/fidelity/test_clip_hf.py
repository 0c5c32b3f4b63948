"""CLIP: avvp's `clip` backbone given VALOR's checkpoint layout (a transformers ViT-L/14 folder in the
huggingface_hub cache tree, random weights, generated here) vs transformers' `CLIPModel` called as VALOR's
utils/clip_preprocess.py calls it, on VALOR's 10 frames of avvp's reference decode."""
from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from avvp.extract.backbones import BACKBONES, BackboneConfig

# VALOR's event captions (utils/clip_preprocess.py), in LLP class order
VALOR_CAPTIONS = [
    "A photo of people talking.", "A photo of a car.", "A photo of people cheering.", "A photo of a dog.",
    "A photo of a cat.", "A photo of frying food.", "A photo of people playing basketball.",
    "A photo of a fire alarm.", "A photo of a chainsaw.", "A photo of a cello.", "A photo of a banjo.",
    "A photo of people singing.", "A photo of a chicken or a rooster.", "A photo of a violin.",
    "A photo of a vaccum cleaner.", "A photo of a laughing baby.", "A photo of an accordion.",
    "A photo of a lawnmower.", "A photo of a motorcycle.", "A photo of a helicopter.",
    "A photo of a acoustic guiter.", "A photo of a ringing telephone.", "A photo of a crying baby.",
    "A photo of a blender.", "A photo of hands clapping."]
# openai/clip-vit-large-patch14's config.json (the architecture values)
VIT_L_14 = dict(projection_dim=768, logit_scale_init_value=2.6592,
                text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                 max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu"),
                vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                   num_attention_heads=16, image_size=224, patch_size=14, hidden_act="quick_gelu"))


def write_clip_tokenizer(folder):
    """vocab.json + merges.txt of OpenAI's CLIP BPE (the table open_clip ships; its special tokens renamed to
    the spelling of the HF files), so transformers' own CLIPTokenizer tokenizes as VALOR's processor did."""
    from open_clip.tokenizer import SimpleTokenizer

    bpe = SimpleTokenizer()
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {names.get(k, k): v for k, v in bpe.encoder.items()}
    merges = [" ".join(pair) for pair, _ in sorted(bpe.bpe_ranks.items(), key=lambda kv: kv[1])]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def test_clip_matches_transformers_clipmodel(reference_video, record, tmp_path):
    from torchvision import transforms
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    from avvp.extract.backbones.prompts import CLIP_PROMPTS

    assert list(CLIP_PROMPTS) == VALOR_CAPTIONS
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = CLIPModel(CLIPConfig(**VIT_L_14)).eval()
    with torch.no_grad():
        model.logit_scale.fill_(float(np.log(100.0)))  # OpenAI CLIP's trained value
    snapshot = tmp_path / "hub" / "models--openai--clip-vit-large-patch14" / "snapshots" / "fidelity0"
    model.save_pretrained(snapshot)
    write_clip_tokenizer(snapshot)

    # official: VALOR LLP_dataset transform (torchvision 0.13's tensor Resize had no antialias) + CLIPModel
    processor = CLIPImageProcessor()  # the default mean/std = openai/clip-vit-large-patch14's
    transform = transforms.Compose([transforms.ToTensor(), transforms.Resize((224, 224), antialias=False),
                                    transforms.Normalize(processor.image_mean, processor.image_std)])
    frames = torch.stack([transform(Image.fromarray(f).convert("RGB")) for f in reference_video.segment_frames])
    tokenizer = CLIPTokenizer.from_pretrained(str(snapshot))
    captions = {k: v for k, v in tokenizer(text=VALOR_CAPTIONS, return_tensors="pt", padding=True).items()}
    with torch.no_grad():
        feats = model.get_image_features(pixel_values=frames)
        feats = getattr(feats, "pooler_output", feats)  # transformers 5 returns an output object
        feats = feats / feats.norm(p=2, dim=-1, keepdim=True)
        logits = model(**captions, pixel_values=frames).logits_per_image
    del model

    backbone = BACKBONES.get("clip")(BackboneConfig(weights_dir=str(tmp_path / "hub")))
    assert backbone.weights_id().startswith("transformers:openai/clip-vit-large-patch14")
    out = backbone.extract_batch([reference_video])[0]
    call = "CLIPModel.get_image_features / norm (VALOR get_image_embedding)"
    record("clip", "features/clip (10, 768)", call, out["features/clip"], feats.numpy())
    record("clip", "zeroshot/clip (10, 25)", "CLIPModel(**processor text, pixel_values).logits_per_image",
           out["zeroshot/clip"], logits.numpy())
