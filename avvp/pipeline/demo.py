"""`make demo`: the whole pipeline from video files, on a CPU laptop, in a few minutes.

    python -m avvp.pipeline.demo --out demo_out [--weights-dir DIR]

1. clips: small synthetic videos made with ffmpeg in OUT/videos (tones, noise bursts, a chirp, speech
   from espeak-ng when it is installed; coloured moving shapes; 128x96, 6-10 s each);
2. `avvp-extract` on them with small backbones (vggish + r2plus1d + CLIP ViT-B-32, the fastest set that
   feeds every role of the models): pretrained weights when --weights-dir / $AVVP_WEIGHTS_DIR holds
   them, otherwise `--weights random`, announced;
3. `avvp-pseudolabel` on a synthetic planted-event store (`avvp.data.synthetic`) whose feature widths
   equal what step 2 extracted. The learned part must be meaningful, and the demo clips have no labels,
   so training always happens on the synthetic store, where the truth is known;
4. `avvp-train`: HAN (weak labels) and a VALOR-style HAN (CLIP/CLAP pseudo-labels), small and few epochs;
5. `avvp-eval`: the ten official numbers of each model on the synthetic test split;
6. `avvp-parse` on one demo clip with the HAN checkpoint (its features match step 2), writing the
   timeline JSON, the PNG and the HTML page. With random backbone weights this shows the plumbing,
   not meaning: the model never saw features of real clips.

Every command is printed as a user would type it and run in-process through its `main()` (the same code
as the console script). The step timings are printed at the end.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence


CLIP_SIZE = "128x96"
CLIP_FPS = 16
AUDIO_RATE = 16000


@dataclass(frozen=True)
class DemoClip:
    """One demo clip: lavfi video and audio graphs (`{d}` = duration), or a speech text for espeak-ng."""

    name: str
    seconds: float
    video: str
    audio: str = ""
    speech: str = ""  # when set, the audio is espeak-ng saying this (clip skipped without espeak-ng)
    what: str = ""


def _moving_box(color: str, size: int, x: str, y: str, enable: str, bg: str = "0x202830") -> str:
    return (f"color=c={bg}:s={CLIP_SIZE}:r={CLIP_FPS}:d={{d}}[bg];color=c={color}:s={size}x{size}:r={CLIP_FPS}:d={{d}}[fg];"
            f"[bg][fg]overlay=x='{x}':y='{y}':enable='{enable}'")


DEMO_CLIPS: tuple[DemoClip, ...] = (
    DemoClip("tone_square", 10, _moving_box("red", 24, "(t-4)*20", "36", "between(t,4,9)"),
             f"sine=f=440:r={AUDIO_RATE}:d={{d}},volume=volume='if(between(t,2,7),0.6,0)':eval=frame",
             what="440 Hz tone 2-7 s; red square moving 4-9 s"),
    DemoClip("noise_bursts", 8, _moving_box("lime", 20, "54", "(t-1)*12", "between(t,1,7)", bg="0x102040"),
             f"anoisesrc=d={{d}}:r={AUDIO_RATE}:c=pink:seed=3:a=0.5,"
             "volume=volume='if(between(t,1,2)+between(t,4,5)+between(t,6.5,7.5),1,0)':eval=frame",
             what="noise bursts at 1-2, 4-5, 6.5-7.5 s; green square falling 1-7 s"),
    DemoClip("chirp_circle", 6, f"testsrc2=s={CLIP_SIZE}:r={CLIP_FPS}:d={{d}}",
             f"aevalsrc='0.4*sin(2*PI*(200+150*t)*t)':s={AUDIO_RATE}:d={{d}}",
             what="rising chirp throughout; moving test pattern"),
    DemoClip("speech_box", 7, _moving_box("yellow", 28, "50", "34", "between(t,0.5,6)", bg="0x302010"),
             speech="Audio visual video parsing finds what is heard and what is seen, and when.",
             what="espeak-ng speech; yellow box 0.5-6 s"),
)


def make_clip(clip: DemoClip, out_dir: Path, ffmpeg: str = "ffmpeg") -> Path | None:
    """Write one clip; returns None (with a notice) when it needs espeak-ng and that is missing."""
    path = out_dir / f"{clip.name}.mp4"
    d = f"{clip.seconds:g}"
    inputs = ["-f", "lavfi", "-i", clip.video.replace("{d}", d) + "[out0]"]
    if clip.speech:
        espeak = shutil.which("espeak-ng")
        if espeak is None:
            print(f"  notice: espeak-ng is not installed; skipping the speech clip {clip.name}")
            return None
        wav = out_dir / f"{clip.name}.speech.wav"
        subprocess.run([espeak, "-w", str(wav), clip.speech], check=True, capture_output=True)
        inputs += ["-i", str(wav)]
    else:
        inputs += ["-f", "lavfi", "-i", clip.audio.replace("{d}", d) + "[out0]"]
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *inputs, "-map", "0:0", "-map", "1:0",
           "-t", d, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast",
           "-c:a", "aac", "-ac", "1", "-ar", str(AUDIO_RATE)]
    if clip.speech:
        cmd += ["-af", "apad"]  # speech shorter than the clip: pad with silence to the full length
    proc = subprocess.run(cmd + [str(path)], capture_output=True, text=True)
    if clip.speech:
        (out_dir / f"{clip.name}.speech.wav").unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed for {clip.name}: {proc.stderr[-800:]}")
    return path


@dataclass(frozen=True)
class DemoConfig:
    out: Path
    weights_dir: str | None = None
    backbones: tuple[str, ...] = ("vggish", "r2plus1d", "clip")
    clip_model: str = "ViT-B-32"
    num_train: int = 240
    num_val: int = 60
    num_test: int = 60
    epochs: int = 6  # HAN
    valor_epochs: int = 12  # the VALOR loss needs more steps before any probability crosses 0.5
    hidden: int = 128
    lr: float = 1e-3
    parse_clip: str = "tone_square"


@dataclass
class Demo:
    cfg: DemoConfig
    timings: list[tuple[str, float]] = field(default_factory=list)

    def step(self, title: str) -> None:
        print(f"\n=== {title} ===", flush=True)

    def run(self, prog: str, main: Callable[[Sequence[str]], int], argv: list[str], ok: Sequence[int] = (0,)) -> int:
        """Print the command as a user would type it, run its main() in-process, time it."""
        print(f"$ {prog} {shlex.join(argv)}", flush=True)
        t0 = time.perf_counter()
        rc = main(argv)
        seconds = time.perf_counter() - t0
        self.timings.append((prog, seconds))
        print(f"  -> exit {rc} in {seconds:.1f} s", flush=True)
        if rc not in ok:
            raise SystemExit(f"demo: {prog} failed with exit code {rc}")
        return rc


def feature_widths(store: Path, names: Sequence[str]) -> dict[str, int]:
    """Width (last axis) of each extracted feature, so the synthetic store matches it exactly."""
    from avvp.data.store import Store

    with Store(store) as s:
        return {n: int(s.read(f"features/{n}", [s.ids[0]]).shape[-1]) for n in names}


def run_demo(cfg: DemoConfig) -> dict[str, Path]:
    from avvp.cli import eval as eval_cli
    from avvp.cli import extract as extract_cli
    from avvp.cli import parse as parse_cli
    from avvp.cli import pseudolabel as pseudolabel_cli
    from avvp.cli import train as train_cli
    from avvp.data.synthetic import SyntheticConfig, generate_synthetic
    from avvp.extract.backbones import feature_specs

    demo = Demo(cfg)
    out = cfg.out
    t_start = time.perf_counter()
    # the demo owns these paths; a re-run starts them fresh (avvp-train refuses to overwrite a run)
    for sub in ("videos", "features.h5", "synthetic.h5", "synthetic.valor_thresholds.json",
                "synthetic_pseudolabel_report", "runs", "parse"):
        p = out / sub
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)

    demo.step("1/6 demo clips (ffmpeg)")
    t0 = time.perf_counter()
    made = []
    for clip in DEMO_CLIPS:
        path = make_clip(clip, videos)
        if path is not None:
            made.append(path)
            print(f"  {path}  ({clip.seconds:g} s: {clip.what})")
    demo.timings.append(("clips", time.perf_counter() - t0))

    demo.step("2/6 features (avvp-extract)")
    weights_dir = cfg.weights_dir or os.environ.get("AVVP_WEIGHTS_DIR")
    weights_args = ["--weights", "random"]
    if weights_dir:
        weights_args = ["--weights-dir", weights_dir]
    else:
        print("  NOTICE: no --weights-dir / $AVVP_WEIGHTS_DIR: the backbones run with RANDOM weights. Everything "
              "below runs for real, but features of the demo clips carry no pretrained meaning.")
    backbone_args = [a for b in cfg.backbones for a in ("--backbone", b)]
    # the demo clips are 6-10 s: the reference profile (like the official AVVP scripts) rejects clips without
    # ten 0.96 s VGGish examples, the clean profile pads them; avvp-parse inherits the profile from the store
    extract_argv = ["--videos", str(videos), *backbone_args, "--clip-model", cfg.clip_model,
                    "--out", str(out / "features.h5"), "--executor", "local", "--no-progress", "--profile", "clean"]
    rc = demo.run("avvp-extract", extract_cli.main, extract_argv + weights_args, ok=(0, 2))
    if rc == 2 and weights_dir:
        print(f"  NOTICE: pretrained weights were not usable from {weights_dir}; falling back to RANDOM weights")
        weights_args = ["--weights", "random"]
        demo.run("avvp-extract", extract_cli.main, extract_argv + weights_args)
    elif rc == 2:
        raise SystemExit("demo: avvp-extract could not start")
    random_weights = weights_args == ["--weights", "random"]
    widths = feature_widths(out / "features.h5", cfg.backbones)
    print(f"  extracted feature widths: {widths}")

    demo.step("3/6 synthetic store with the same feature widths + pseudo-labels (avvp-pseudolabel)")
    t0 = time.perf_counter()
    store = out / "synthetic.h5"
    syn = SyntheticConfig(num_train=cfg.num_train, num_val=cfg.num_val, num_test=cfg.num_test,
                          features=tuple(cfg.backbones), dims=tuple(sorted(widths.items())))
    generate_synthetic(store, syn, feature_specs(syn.features))
    print(f"  >>> generate_synthetic({str(store)!r}, SyntheticConfig(num_train={syn.num_train}, num_val={syn.num_val}, "
          f"num_test={syn.num_test}, features={syn.features}, dims={syn.dims}), feature_specs({syn.features}))")
    demo.timings.append(("generate_synthetic", time.perf_counter() - t0))
    demo.run("avvp-pseudolabel", pseudolabel_cli.main, ["--data", str(store), "--report"])

    demo.step("4/6 training (avvp-train): HAN with weak labels, VALOR-style HAN with pseudo-labels")
    # small models and a higher learning rate than the papers' (3e-4 / 1e-4 over 40-60 epochs), so that a
    # few epochs on a few hundred videos already learn (measured: val segment Type@AV about 75 after 5)
    small = ["--set", f"model.options.hidden={cfg.hidden}", "--set", f"model.options.ff={2 * cfg.hidden}",
             "--set", f"optim.lr={cfg.lr}"]
    features = ["--audio", "vggish", "--visual", "clip,r2plus1d"]
    runs = {"han": out / "runs" / "han", "valor": out / "runs" / "valor"}
    demo.run("avvp-train", train_cli.main,
             ["--model", "han", "--data", str(store), "--out", str(runs["han"]), *features,
              "--epochs", str(cfg.epochs), "--no-progress", *small])
    demo.run("avvp-train", train_cli.main,
             ["--preset", "valor", "--data", str(store), "--out", str(runs["valor"]), *features,
              "--labels", "pseudo", "--epochs", str(cfg.valor_epochs), "--batch-size", "16", "--no-progress", *small,
              "--set", "model.options.heads=4", "--set", "optim.warmup=1", "--set", f"optim.lr_min={cfg.lr / 100}"])

    demo.step("5/6 evaluation (avvp-eval): the ten official numbers on the synthetic test split")
    for name, run in runs.items():
        print(f"  [{name}]")
        demo.run("avvp-eval", eval_cli.main,
                 ["--pred", str(run / "predictions_test.h5"), "--split", "test", "--data", str(store)])

    demo.step("6/6 parsing a demo clip (avvp-parse)")
    clip = next((p for p in made if p.stem == cfg.parse_clip), made[0])
    parse_dir = out / "parse"
    demo.run("avvp-parse", parse_cli.main,
             [str(clip), "--checkpoint", str(runs["han"] / "best.pt"), "--out", str(parse_dir), "--html",
              "--clip-model", cfg.clip_model, *weights_args])
    if random_weights:
        print("  NOTE: this parse used RANDOM backbone weights and a model trained on synthetic features: it shows "
              "the plumbing (windows, gating, events, figure, page), not meaningful events.")
    else:
        print("  NOTE: the model was trained on synthetic features, not on LLP; train on real LLP features for "
              "meaningful timelines of real videos.")

    total = time.perf_counter() - t_start
    print("\n=== timings ===")
    for name, seconds in demo.timings:
        print(f"  {name:20s} {seconds:7.1f} s")
    print(f"  {'total':20s} {total:7.1f} s")
    outputs = {"png": parse_dir / f"{clip.stem}.png", "html": parse_dir / f"{clip.stem}.html",
               "json": parse_dir / f"{clip.stem}.timeline.json"}
    print("\nwritten:")
    for kind, path in outputs.items():
        print(f"  {kind:5s} {path}")
    return outputs


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m avvp.pipeline.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--weights-dir", default=None, help="offline backbone weights (default: $AVVP_WEIGHTS_DIR)")
    p.add_argument("--epochs", type=int, default=DemoConfig.epochs, help="HAN epochs")
    p.add_argument("--valor-epochs", type=int, default=DemoConfig.valor_epochs)
    args = p.parse_args(argv)
    if shutil.which("ffmpeg") is None:
        print("demo: the ffmpeg binary is required (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    run_demo(DemoConfig(out=args.out, weights_dir=args.weights_dir, epochs=args.epochs, valor_epochs=args.valor_epochs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
