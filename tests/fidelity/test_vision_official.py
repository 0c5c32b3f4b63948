"""ResNet-152 and R(2+1)D: avvp's backbones vs the official AVVP-ECCV20 scripts' model calls, on the frames
of avvp's reference decode (saved as lossless PNGs so the official image loaders read them from files),
with one generated weights file per network that both sides load through their own loaders."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from avvp.extract.backbones import BACKBONES, BackboneConfig


def randomise_batchnorm(model, generator):
    """BatchNorm at init is an identity; give it seeded random statistics so the check can see it."""
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=generator) + 0.5
            m.bias.data = torch.randn(n, generator=generator) * 0.1
            m.running_mean = torch.randn(n, generator=generator) * 0.1
            m.running_var = torch.rand(n, generator=generator) + 0.5


@pytest.fixture(scope="module")
def frame_files(reference_video, tmp_path_factory):
    """The 80 reference frames as PNG files, named in order like the official frame folders."""
    folder = tmp_path_factory.mktemp("frames")
    paths = []
    for i, frame in enumerate(reference_video.frames):
        path = folder / f"{i + 1:06d}.png"
        Image.fromarray(frame).save(path)
        paths.append(str(path))
    return paths


def test_resnet152_matches_pretrainedmodels(reference_video, frame_files, record, tmp_path, monkeypatch):
    import pretrainedmodels
    import torchvision
    from pretrainedmodels import utils

    # the file pretrainedmodels.resnet152('imagenet') loads (torchvision's original URL, keys fc.*), random
    generator = torch.Generator().manual_seed(11)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        source = torchvision.models.resnet152(weights=None)
    randomise_batchnorm(source, generator)
    settings = pretrainedmodels.pretrained_settings["resnet152"]["imagenet"]
    filename = settings["url"].rsplit("/", 1)[-1]
    assert filename == "resnet152-b121ed2d.pth"
    hub = tmp_path / "torch_home" / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(source.state_dict(), hub / "checkpoints" / filename)
    del source

    # official: AVVP scripts/extract_rgb_feat.py (pretrainedmodels finds the file in its download cache)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    model = pretrainedmodels.resnet152(pretrained="imagenet")
    load_image_fn = utils.LoadTransformImage(model)
    model.last_linear = utils.Identity()
    model.eval()
    images = torch.zeros((len(frame_files), 3, 224, 224))
    for i, path in enumerate(frame_files):
        images[i] = load_image_fn(path)
    with torch.no_grad():
        official = model(images).squeeze().numpy()
    del model

    backbone = BACKBONES.get("resnet152")(BackboneConfig(weights_dir=str(hub / "checkpoints")))
    assert "resnet152-b121ed2d.pth" in backbone.weights_id()
    ours = backbone.extract_batch([reference_video])[0]["features/resnet152"]
    record("resnet152", "features/resnet152 (80, 2048)",
           "pretrainedmodels.resnet152('imagenet'), last_linear=Identity, LoadTransformImage", ours, official)


def test_r2plus1d_matches_avvp_script(reference_video, frame_files, record, tmp_path):
    import torchvision
    from torch import nn
    from torchvision import transforms

    generator = torch.Generator().manual_seed(12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12)
        source = torchvision.models.video.r2plus1d_18(weights=None)
    randomise_batchnorm(source, generator)
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    torch.save(source.state_dict(), weights_dir / "r2plus1d_18-91a641e6.pth")

    # official: AVVP scripts/extract_3D_feat.py: r2plus1d_18 with its weights, children()[:-1], clips of 8
    # frames of scripts/utils.py LoadTransformImage (PIL RGB, Resize((112, 112)), ToTensor, Kinetics mean/std)
    model = torchvision.models.video.r2plus1d_18(weights=None)
    model.load_state_dict(torch.load(weights_dir / "r2plus1d_18-91a641e6.pth"))
    model = nn.Sequential(*list(model.children())[:-1]).eval()
    transform = transforms.Compose([transforms.Resize((112, 112)), transforms.ToTensor(),
                                    transforms.Normalize(mean=[0.43216, 0.394666, 0.37645],
                                                         std=[0.22803, 0.22145, 0.216989])])
    images = torch.zeros((len(frame_files) // 8, 3, 8, 112, 112))
    for i, path in enumerate(frame_files):
        with open(path, "rb") as f, Image.open(f) as img:
            images[i // 8, :, i % 8] = transform(img.convert("RGB"))
    with torch.no_grad():
        official = model(images).squeeze().numpy()

    backbone = BACKBONES.get("r2plus1d")(BackboneConfig(weights_dir=str(weights_dir)))
    ours = backbone.extract_batch([reference_video])[0]["features/r2plus1d"]
    record("r2plus1d", "features/r2plus1d (10, 512)",
           "torchvision r2plus1d_18 + nn.Sequential(children()[:-1]) on 10 clips of 8 frames", ours, official)
