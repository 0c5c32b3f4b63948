"""The VGGish log-mel frontend against an independent, loop-based implementation of the published
recipe (AudioSet `mel_features.py` / `vggish_input.py` formulas), plus hand-computable values.

The reference implementation below deliberately shares no code with the module: the DFT is a direct
sum of cosines/sines (no np.fft), the mel matrix is built bin by bin, framing is explicit slicing.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from avvp.extract.backbones import vggish_frontend as fe

SR = 16000


# ----------------------------------------------------------------------------- independent reference
def ref_hz_to_mel(f):
    return 1127.0 * math.log(1.0 + f / 700.0)


def ref_mel_matrix():
    n_bins, n_mels = 257, 64
    lo, hi = ref_hz_to_mel(125.0), ref_hz_to_mel(7500.0)
    edges = [lo + (hi - lo) * k / (n_mels + 1) for k in range(n_mels + 2)]
    m = np.zeros((n_bins, n_mels))
    for b in range(1, n_bins):  # DC bin (b = 0) stays zero
        mel_b = ref_hz_to_mel(8000.0 * b / (n_bins - 1))
        for i in range(n_mels):
            left, center, right = edges[i], edges[i + 1], edges[i + 2]
            if left < mel_b <= center:
                m[b, i] = (mel_b - left) / (center - left)
            elif center < mel_b < right:
                m[b, i] = (right - mel_b) / (right - center)
    return m, edges


def ref_examples(wave):
    win, hop, nfft = 400, 160, 512
    n_frames = 1 + (len(wave) - win) // hop
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / win) for n in range(win)])
    # direct DFT of the zero-padded 512-point frame: X[k] = sum_n x[n] e^{-2πikn/512}, k = 0..256
    n = np.arange(win)[:, None]
    k = np.arange(nfft // 2 + 1)[None, :]
    cos_m = np.cos(2 * np.pi * k * n / nfft)
    sin_m = np.sin(2 * np.pi * k * n / nfft)
    mel_m, _ = ref_mel_matrix()
    logmel = np.zeros((n_frames, 64))
    for t in range(n_frames):
        x = wave[t * hop : t * hop + win].astype(np.float64) * window
        mag = np.sqrt((x @ cos_m) ** 2 + (x @ sin_m) ** 2)
        logmel[t] = np.log(mag @ mel_m + 0.01)
    n_ex = 1 + (n_frames - 96) // 96
    return np.stack([logmel[e * 96 : e * 96 + 96] for e in range(n_ex)])


# ----------------------------------------------------------------------------- signals
def sines_plus_noise(n=160000, seed=0):
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1234.5 * t) + 0.1 * np.sin(2 * np.pi * 5100 * t)
    return (x + 0.05 * rng.standard_normal(n)).astype(np.float32)


def speech_like_chirp(n=160000, seed=1):
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    f0 = 120 + 80 * np.sin(2 * np.pi * 0.7 * t)  # gliding pitch
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(h * phase) / h for h in range(1, 12))  # harmonic series
    syllables = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2  # 4 Hz syllable envelope
    sweep = 0.2 * np.sin(2 * np.pi * (200 * t + 350 * t**2))  # linear chirp 200 → 7200 Hz
    x = 0.1 * voiced * syllables + sweep + 0.01 * rng.standard_normal(n)
    return x.astype(np.float32)


@pytest.mark.parametrize("make_signal", [sines_plus_noise, speech_like_chirp])
def test_examples_match_independent_reference(make_signal):
    wave = make_signal()
    ours = fe.waveform_to_examples(wave)
    ref = ref_examples(wave)
    assert ours.shape == ref.shape == (10, 96, 64)
    assert np.max(np.abs(ours - ref)) <= 1e-4
    # the signal is actually exercised (not a floor of log(0.01) everywhere)
    assert ours.max() > 0.0 and ours.std() > 1.0


def test_mel_matrix_matches_reference_and_band_edges():
    ours = fe.mel_weight_matrix()
    ref, edges_mel = ref_mel_matrix()
    assert ours.shape == (257, 64)
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert np.all(ours[0] == 0.0)  # DC bin zeroed
    # band edges: 66 values linearly spaced in mel between mel(125 Hz) and mel(7500 Hz)
    assert ref_hz_to_mel(125.0) == pytest.approx(185.1695, abs=1e-3)  # 1127·ln(1 + 125/700)
    assert ref_hz_to_mel(7500.0) == pytest.approx(2773.3319, abs=1e-3)  # 1127·ln(1 + 7500/700)
    edges_hz = fe.mel_to_hertz(np.array(edges_mel))
    assert edges_hz[0] == pytest.approx(125.0) and edges_hz[-1] == pytest.approx(7500.0)
    assert edges_hz[1] == pytest.approx(154.6690, abs=1e-3)  # 700·(exp((185.1695 + 39.8179)/1127) − 1)
    # a bin exactly at a band centre has weight 1 only if it falls there; every band has support
    assert np.all(ours.max(axis=0) > 0.4)
    # bins above 7500 Hz (bin 240 = 7500 Hz exactly, weight 0) carry no weight
    assert np.all(ours[240:] == 0.0) and np.any(ours[239] > 0.0)


def test_window_frames_and_example_counts():
    w = fe.periodic_hann(400)
    assert w[0] == 0.0
    assert w[1] == pytest.approx(math.sin(math.pi / 400) ** 2, rel=1e-12)  # 6.1684e-05
    assert w[100] == pytest.approx(0.5, abs=1e-15) and w[200] == pytest.approx(1.0)
    assert w[399] == pytest.approx(w[1])  # periodic: w[N-n] == w[n], w[N] (not included) == 0
    assert fe.FFT_LENGTH == 512 and fe.STFT_WINDOW_SAMPLES == 400 and fe.STFT_HOP_SAMPLES == 160
    wave = sines_plus_noise()
    assert fe.log_mel_spectrogram(wave).shape == (998, 64)  # 1 + (160000 - 400) // 160
    assert fe.num_examples(160000) == 10
    # 10 examples need 960 frames = 400 + 959·160 = 153840 samples
    assert fe.num_examples(153840) == 10 and fe.num_examples(153839) == 9
    assert fe.waveform_to_examples(wave[:153839]).shape == (9, 96, 64)
    assert fe.num_examples(399) == 0 and fe.waveform_to_examples(np.zeros(399, np.float32)).shape == (0, 96, 64)


def test_silence_is_log_offset_and_bad_inputs_raise():
    ex = fe.waveform_to_examples(np.zeros(160000, np.float32))
    np.testing.assert_array_equal(ex, np.full((10, 96, 64), math.log(0.01)))
    with pytest.raises(ValueError, match="16000 Hz"):
        fe.waveform_to_examples(np.zeros(44100, np.float32), sample_rate=44100)
    with pytest.raises(ValueError, match="mono"):
        fe.waveform_to_examples(np.zeros((2, 16000), np.float32))
