"""CLAP: avvp's `clap` backbone vs laion_clap's own calls (with torchaudio installed, so laion_clap computes
its log-mel itself) and VALOR's token-map forward (utils/clap_utils.py `My_CLAP`, restated), on one CLAP_Module
(seeded random weights: the object avvp builds, which both sides call) and avvp's reference 48 kHz decode."""
from __future__ import annotations

import numpy as np
import torch

from avvp.extract.backbones import BACKBONES, BackboneConfig

# VALOR utils/clap_preprocess.py: the CLAP labels, prompted
VALOR_LABELS = ["Speech", "Car", "Cheering", "Dog", "Cat", "Frying (food)", "Basketball bounce", "Fire alarm",
                "Chainsaw", "Cello", "Banjo", "Singing", "Chicken, rooster", "Violin fiddle", "Vacuum cleaner",
                "Baby laughter", "Accordion", "Lawn mower", "Motorcycle", "Helicopter", "Acoustic guitar",
                "Telephone bell ringing", "Baby cry, infant cry", "Blender", "Clapping"]
VALOR_CAPTIONS = ["This is a sound of " + t.lower() for t in VALOR_LABELS]


def valor_feature_maps(module, waveform_48k):
    """VALOR get_audio_feature_maps + My_CLAP.htsat_forward(_features), restated: the clip resampled by index
    to 480000, int16 round trip, laion_clap's get_audio_features (fusion, repeatpad), then HTS-AT up to the
    grouped (B, 768, 2, 32) map, flattened to (64, 768)."""
    from laion_clap.training.data import float32_to_int16, get_audio_features, int16_to_float32

    samples = np.round(np.linspace(0, len(waveform_48k) - 1, 480000)).astype(np.int32)
    wave = int16_to_float32(float32_to_int16(waveform_48k[samples]))
    sample = get_audio_features({}, torch.from_numpy(wave).float(), 480000, data_truncating="fusion",
                                data_filling="repeatpad", audio_cfg=module.model_cfg["audio_cfg"])
    batch = {k: v.unsqueeze(0) for k, v in sample.items()}
    ab = module.model.audio_branch
    with torch.no_grad():
        assert ab.enable_fusion and batch["longer"].sum() == 0
        x = batch["mel_fusion"].transpose(1, 3)
        x = ab.bn0(x).transpose(1, 3)
        x = ab.reshape_wav2img(x)
        frames_num = x.shape[2]
        x = ab.patch_embed(x, longer_idx=[])
        if ab.ape:
            x = x + ab.absolute_pos_embed
        x = ab.pos_drop(x)
        for layer in ab.layers:
            x, _ = layer(x)
        x = ab.norm(x)
        b, _, c = x.shape
        sf = frames_num // (2 ** (len(ab.depths) - 1)) // ab.patch_stride[0]
        st = frames_num // (2 ** (len(ab.depths) - 1)) // ab.patch_stride[1]
        x = x.permute(0, 2, 1).contiguous().reshape(b, c, sf, st)
        b, c, f, t = x.shape
        c_freq_bin = f // ab.freq_ratio
        x = x.reshape(b, c, f // c_freq_bin, c_freq_bin, t)
        x = x.permute(0, 1, 3, 2, 4).contiguous().reshape(b, c, c_freq_bin, -1)
        return torch.flatten(x, 2).permute(0, 2, 1).contiguous()[0].numpy()


def test_clap_matches_laion_clap_and_valor(reference_video, record):
    import torchaudio
    from laion_clap.training import data as laion_data

    from avvp.extract.backbones.prompts import CLAP_TEXTS

    assert getattr(laion_data, "torchaudio", None) is torchaudio, "laion_clap must compute its own log-mel"
    assert list(CLAP_TEXTS) == VALOR_CAPTIONS
    backbone = BACKBONES.get("clap")(BackboneConfig(weights="random"))
    module = backbone.load_model()  # laion_clap.CLAP_Module
    out = backbone.extract_batch([reference_video])[0]
    text_ours = backbone.text_embeddings()

    # official: VALOR get_audio_embedding / get_text_embedding / calculate_audio_logits
    audio = np.asarray(reference_video.audio_48k, dtype=np.float32)
    samples = np.round(np.linspace(0, audio.shape[0], 11)).astype(np.int32)
    step = audio.shape[0] // 10
    pieces = [audio[samples[i]: samples[i] + step] for i in range(10)]
    with torch.no_grad():
        audio_embeds = module.get_audio_embedding_from_data(x=pieces)
        text_embeds = module.get_text_embedding(VALOR_CAPTIONS)
        logit_scale_a, _ = module.model(None, None, "cpu")
        logits = logit_scale_a * torch.from_numpy(audio_embeds) @ torch.from_numpy(text_embeds).t()
    maps = valor_feature_maps(module, audio)

    record("clap", "features/clap (10, 512)", "laion_clap get_audio_embedding_from_data (torchaudio log-mel)",
           out["features/clap"], audio_embeds)
    record("clap", "text/clap (25, 512)", "laion_clap get_text_embedding", text_ours, text_embeds)
    record("clap", "zeroshot/clap (10, 25)", "VALOR calculate_audio_logits: logit_scale_a * audio @ text.T",
           out["zeroshot/clap"], logits.numpy())
    record("clap", "features/clap_tokens (64, 768)", "VALOR My_CLAP.get_audio_feature_maps (restated)",
           out["features/clap_tokens"], maps)
