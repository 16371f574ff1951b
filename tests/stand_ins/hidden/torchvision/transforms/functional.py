"""The torchvision.transforms.functional names spandrel imports (LaMa, RestoreFormer)."""

from enum import Enum


class InterpolationMode(Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"


def rotate(*args: object, **kwargs: object) -> None:
    raise NotImplementedError("torchvision stand-in: rotate is used only by spandrel's LaMa inpainting")


def normalize(*args: object, **kwargs: object) -> None:
    raise NotImplementedError("torchvision stand-in: normalize is used only by spandrel's RestoreFormer")
