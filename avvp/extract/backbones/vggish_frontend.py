"""The VGGish log-mel frontend: 16 kHz mono waveform → (n_examples, 96, 64) log-mel patches.

This is the input stage of the `vggish` backbone, written from the published recipe of the AudioSet
VGGish release (`vggish_params.py`, `mel_features.py`, `vggish_input.py`):

* 25 ms frames (400 samples) every 10 ms (160 samples) over the whole waveform, no padding:
  `1 + floor((n_samples - 400) / 160)` frames;
* a PERIODIC Hann window `0.5 - 0.5 cos(2πn/400)`, FFT length 512 (next power of two of 400),
  magnitude spectrum `|rfft|` (not power) → 257 bins;
* an HTK-style mel matrix: mel(f) = 1127·ln(1 + f/700); 66 band edges linearly spaced in mel between
  125 Hz and 7500 Hz; band i is a triangle over edges (i, i+1, i+2) evaluated in the MEL domain at
  the FFT bin frequencies linspace(0, 8000, 257); the DC bin's weights are zeroed;
* log(mel + 0.01);
* non-overlapping examples of 96 frames (0.96 s), hop 96 frames.

A 10 s clip (160000 samples) gives 998 frames → exactly 10 examples (the last 38 frames are dropped),
which is the reference's (10, 96, 64) per AVVP video.

Computation is float64 numpy, as the reference (which feeds float64 examples into a float32 graph).
Resampling is not done here: the decoder delivers 16 kHz (the reference resamples with resampy only
when the wav is not already 16 kHz; the AVVP scripts write 16 kHz wavs).
"""
from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000
STFT_WINDOW_SAMPLES = 400  # round(16000 * 0.025)
STFT_HOP_SAMPLES = 160  # round(16000 * 0.010)
FFT_LENGTH = 512  # 2 ** ceil(log2(400))
NUM_SPECTROGRAM_BINS = FFT_LENGTH // 2 + 1  # 257
NUM_MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # round(0.96 s * 100 frames/s)
EXAMPLE_HOP_FRAMES = 96  # non-overlapping examples

# HTK mel scale constants used by the VGGish release (natural-log form of 2595·log10(1 + f/700))
_MEL_BREAK_FREQUENCY_HZ = 700.0
_MEL_HIGH_FREQUENCY_Q = 1127.0


def hertz_to_mel(frequencies_hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale, natural-log form: 1127 · ln(1 + f / 700)."""
    return _MEL_HIGH_FREQUENCY_Q * np.log(1.0 + np.asarray(frequencies_hz, dtype=np.float64) / _MEL_BREAK_FREQUENCY_HZ)


def mel_to_hertz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of `hertz_to_mel` (used to report band edges in Hz; not needed by the transform)."""
    return _MEL_BREAK_FREQUENCY_HZ * (np.exp(np.asarray(mel, dtype=np.float64) / _MEL_HIGH_FREQUENCY_Q) - 1.0)


def periodic_hann(window_length: int) -> np.ndarray:
    """The periodic Hann window (the DFT-even one; `np.hanning` is the symmetric one and differs)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi / window_length * np.arange(window_length))


def frame(data: np.ndarray, window_length: int, hop_length: int) -> np.ndarray:
    """Non-padded framing along axis 0: (1 + floor((n - window) / hop), window, ...) as a read-only
    strided view. Fewer samples than one window gives zero frames."""
    num_samples = data.shape[0]
    num_frames = 0 if num_samples < window_length else 1 + (num_samples - window_length) // hop_length
    shape = (num_frames, window_length) + data.shape[1:]
    strides = (data.strides[0] * hop_length,) + data.strides
    return np.lib.stride_tricks.as_strided(data, shape=shape, strides=strides, writeable=False)


@functools.lru_cache(maxsize=8)
def _mel_weight_matrix_cached(
    num_mel_bins: int, num_spectrogram_bins: int, sample_rate: int, lower_edge_hz: float, upper_edge_hz: float
) -> np.ndarray:
    nyquist_hz = sample_rate / 2.0
    if not 0.0 <= lower_edge_hz < upper_edge_hz <= nyquist_hz:
        raise ValueError(
            f"mel band edges must satisfy 0 <= lower ({lower_edge_hz}) < upper ({upper_edge_hz}) "
            f"<= Nyquist ({nyquist_hz})"
        )
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist_hz, num_spectrogram_bins))
    edges_mel = np.linspace(hertz_to_mel(lower_edge_hz), hertz_to_mel(upper_edge_hz), num_mel_bins + 2)
    lower, center, upper = edges_mel[:-2], edges_mel[1:-1], edges_mel[2:]
    # triangles are linear in the mel domain (not in Hz), one column per band
    rising = (bins_mel[:, None] - lower[None, :]) / (center - lower)[None, :]
    falling = (upper[None, :] - bins_mel[:, None]) / (upper - center)[None, :]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # HTK excludes the DC bin
    weights[0, :] = 0.0
    weights.setflags(write=False)
    return weights


def mel_weight_matrix(
    num_mel_bins: int = NUM_MEL_BANDS,
    num_spectrogram_bins: int = NUM_SPECTROGRAM_BINS,
    sample_rate: int = SAMPLE_RATE,
    lower_edge_hz: float = MEL_MIN_HZ,
    upper_edge_hz: float = MEL_MAX_HZ,
) -> np.ndarray:
    """(num_spectrogram_bins, num_mel_bins) float64 matrix that post-multiplies a magnitude spectrogram."""
    return _mel_weight_matrix_cached(
        int(num_mel_bins), int(num_spectrogram_bins), int(sample_rate), float(lower_edge_hz), float(upper_edge_hz)
    )


def log_mel_spectrogram(waveform: np.ndarray) -> np.ndarray:
    """(num_frames, 64) float64 log(mel + 0.01) of a 16 kHz mono waveform."""
    signal = np.asarray(waveform, dtype=np.float64)
    if signal.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (n,), got {signal.shape}")
    frames = frame(signal, STFT_WINDOW_SAMPLES, STFT_HOP_SAMPLES)
    magnitude = np.abs(np.fft.rfft(frames * periodic_hann(STFT_WINDOW_SAMPLES), FFT_LENGTH))
    return np.log(magnitude @ mel_weight_matrix() + LOG_OFFSET)


def waveform_to_examples(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_examples, 96, 64) float64 log-mel examples; n_examples = 1 + (n_frames - 96) // 96."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"VGGish needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; decode at 16 kHz "
            "(the reference resamples with resampy, which this project does not use)"
        )
    log_mel = log_mel_spectrogram(waveform)
    return np.ascontiguousarray(frame(log_mel, EXAMPLE_FRAMES, EXAMPLE_HOP_FRAMES))


def num_examples(num_samples: int) -> int:
    """How many 0.96 s examples a waveform of `num_samples` samples yields (10 for 160000)."""
    num_frames = 0 if num_samples < STFT_WINDOW_SAMPLES else 1 + (num_samples - STFT_WINDOW_SAMPLES) // STFT_HOP_SAMPLES
    return 0 if num_frames < EXAMPLE_FRAMES else 1 + (num_frames - EXAMPLE_FRAMES) // EXAMPLE_HOP_FRAMES
