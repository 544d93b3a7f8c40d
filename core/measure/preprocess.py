"""The eval transform of an image classifier, as torchvision's ``ImageClassification``
preset applies it to a PIL image, without torch.

Resize the shorter side (aspect kept), center-crop a square, scale the pixels, then
subtract the mean and divide by the std, per RGB channel. Each step follows
torchvision's PIL code path (``transforms.functional.resize`` / ``center_crop``) so that
the numbers match a torch evaluation; tests/core/test_datasets.py compares the two.

Runs in workers on Python 3.10 with only numpy and Pillow; Pillow is imported where an
image is handled, so that this module imports without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import UsageError

if TYPE_CHECKING:
    from PIL.Image import Image

# Pillow's resampling filter numbers, as torchvision maps its InterpolationMode values
# (transforms.functional.pil_modes_mapping). Plain ints work in every Pillow version.
PIL_FILTERS: dict[str, int] = {
    "nearest": 0,
    "nearest-exact": 0,
    "lanczos": 1,
    "bilinear": 2,
    "bicubic": 3,
    "box": 4,
    "hamming": 5,
}

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_FIELDS = ("resize", "crop", "mean", "std", "interpolation", "bgr", "scale")
_REQUIRED = ("resize", "crop", "mean", "std")


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """How an image becomes a model input.

    ``resize``: the shorter side, in pixels, before the crop (torchvision's ``Resize(int)``);
    ``crop``: the side of the centered square fed to the model (zero-padded if the
    resized image is smaller); ``scale``: pixel values (0..255) times this before the
    mean and std (1/255, as ``ToTensor`` does); ``mean``/``std``: per channel, in RGB
    order; ``bgr``: feed the channels as B, G, R (after normalising)."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    bgr: bool = False
    scale: float = 1.0 / 255.0

    def __post_init__(self) -> None:
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(
                    f"Preprocessing {name} {value!r} is not a whole number of pixels.",
                    f"Give {name} as an integer of 1 or more, e.g. resize 256, crop 224.",
                )
        object.__setattr__(self, "mean", _triple(self.mean, "mean", positive=False))
        object.__setattr__(self, "std", _triple(self.std, "std", positive=True))
        if self.interpolation not in PIL_FILTERS:
            raise UsageError(
                f"Unknown interpolation {self.interpolation!r}.",
                f"Use one of: {', '.join(PIL_FILTERS)}.",
            )
        if not isinstance(self.bgr, bool):
            raise UsageError(
                f"Preprocessing bgr {self.bgr!r} is not true or false.", "Give bgr as a boolean."
            )
        scale = self.scale
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float))
            or not math.isfinite(scale)
            or scale <= 0
        ):
            raise UsageError(
                f"Preprocessing scale {scale!r} is not a positive number.",
                "Use 1/255 (0.00392156862745098) for inputs in [0, 1], or 1 for inputs in [0, 255].",
            )
        object.__setattr__(self, "scale", float(scale))

    @classmethod
    def default_for(cls, size: int = 224) -> Preprocessing:
        """The usual ImageNet eval transform for a ``size`` x ``size`` input: resize by
        256/224 of it (224 -> 256, 299 -> 342), bilinear, ImageNet mean and std."""
        return cls(
            resize=int(round(size * 256 / 224)), crop=size, mean=IMAGENET_MEAN, std=IMAGENET_STD
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std),
            "interpolation": self.interpolation, "bgr": self.bgr, "scale": self.scale,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Any) -> Preprocessing:
        if not isinstance(data, dict):
            raise UsageError(
                f"Preprocessing must be an object, not {type(data).__name__}.",
                "Give at least resize, crop, mean and std, e.g. "
                '{"resize": 256, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}.',
            )
        unknown = sorted(str(key) for key in data if key not in _FIELDS)
        if unknown:
            raise UsageError(
                f"Unknown preprocessing option(s): {', '.join(unknown)}.",
                f"Use only: {', '.join(_FIELDS)}.",
            )
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise UsageError(
                f"Preprocessing lacks {', '.join(missing)}.", "Give resize, crop, mean and std."
            )
        return cls(**data)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize: the shorter side becomes ``resize``, the
        longer ``int(resize * long / short)``, as torchvision computes it."""
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def resize_and_crop(self, image: Image) -> np.ndarray:
        """The ``crop`` x ``crop`` x 3 uint8 pixels of ``image`` (converted to RGB first)."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        size = self.output_size(image.width, image.height)
        if size != image.size:
            image = image.resize(size, PIL_FILTERS[self.interpolation])
        pixels = np.asarray(image, dtype=np.uint8)
        return center_crop(pixels, self.crop)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB -> (n, 3, H, W) float32 model input."""
        x = pixels.astype(np.float32)
        # Divide, as torchvision's convert_image_dtype does (x / 255), rather than multiply
        # by 1/255: the float32 results are then identical, not just within an ulp.
        x /= np.float32(1.0 / self.scale)
        x -= np.asarray(self.mean, dtype=np.float32)
        x /= np.asarray(self.std, dtype=np.float32)
        if self.bgr:
            x = x[..., ::-1]
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def __call__(self, image: Image) -> np.ndarray:
        """One PIL image -> (3, crop, crop) float32, as ``weights.transforms()(image)``."""
        return self.normalize(self.resize_and_crop(image)[None])[0]


def center_crop(pixels: np.ndarray, crop: int) -> np.ndarray:
    """The centered ``crop`` x ``crop`` of (H, W, C) ``pixels``, zero-padded first where the
    image is smaller, with torchvision's padding split and offset rounding."""
    height, width = pixels.shape[:2]
    if crop > width or crop > height:
        pad_w = max(crop - width, 0)
        pad_h = max(crop - height, 0)
        pixels = np.pad(
            pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0))
        )
        height, width = pixels.shape[:2]
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return pixels[top : top + crop, left : left + crop]


def _triple(value: Any, name: str, *, positive: bool) -> tuple[float, float, float]:
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError(value)
        numbers = tuple(float(v) for v in value if not isinstance(v, bool))
        count = len(value)
    except (TypeError, ValueError):
        numbers, count = (), 0
    if count != 3 or len(numbers) != 3 or not all(math.isfinite(n) for n in numbers):
        raise UsageError(
            f"Preprocessing {name} {value!r} is not three numbers.",
            f"Give one per channel, in RGB order, e.g. {name} {list(IMAGENET_MEAN if name == 'mean' else IMAGENET_STD)}.",
        )
    if positive and not all(n > 0 for n in numbers):
        raise UsageError(
            f"Preprocessing {name} {list(numbers)} has a value of 0 or less.",
            f"Every {name} must be positive.",
        )
    return (numbers[0], numbers[1], numbers[2])
