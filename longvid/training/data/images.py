"""Still images as a stage mixture component: a folder of pictures with their captions.

Layout of an image folder (local dir or ``s3://bucket/prefix``)::

    captions.jsonl      one {"image": "rel/path.jpg", "caption": "..."} per line
    rel/path.jpg ...    JPEG, PNG or WebP files, paths relative to the folder

Lines are read with pyarrow into two string columns kept as Arrow arrays (no Python object per
line; forked workers share their pages), a string is made only for the sample being loaded.
The folder's fingerprint is the sha256 of ``captions.jsonl`` (it names every image and
caption; the image bytes are not hashed, so replace a picture under a new name or edit the
line to make a resume notice it).

In a stage, the image rows follow the catalog's: component ``c``'s image ``i`` is loader row
``len(catalog) + start_c + i`` (:class:`StageImages`), so the epoch plan, the substitutes and
the cursor treat images and videos alike. An image is one frame (``T = 1``, time 0, duration
0): the model encodes it through its image path, and the prompt has no timestamp sentence.

A line without an image path or caption, an image file that is missing or does not decode
raises :class:`~longvid.training.data.sample.SampleError` naming the file (the loader then
substitutes another image of the same component, as for a video that does not decode); a
``captions.jsonl`` that is missing or not JSON lines stops the run naming the file.
"""

from __future__ import annotations

import bisect
import hashlib
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json
import torch

from longvid import storage
from longvid.errors import FormatError, NotFoundError, StorageError
from longvid.training.data.config import ImageComponent, StageData
from longvid.training.data.sample import LoadedSample, SampleError

CAPTIONS_NAME = "captions.jsonl"
IMAGE_TIMES = np.zeros(1, dtype=np.float64)  # one frame at t = 0


@dataclass
class ImageFolder:
    """One image folder's lines as aligned columns: line ``i`` is image ``i``."""

    root: str
    paths: pa.StringArray  # [M]: image path relative to root (null when the line has none)
    captions: pa.StringArray  # [M]: caption (null when the line has none)
    fingerprint: str

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> str | None:
        return self.paths[i].as_py()

    def caption(self, i: int) -> str | None:
        return self.captions[i].as_py()

    def where(self, i: int) -> str:
        """How errors name line ``i``: ``<root>/captions.jsonl line N (<image uri>)``."""
        path = self.path(i)
        try:
            image = storage.join(self.root, path) if path else "no image path"
        except StorageError:  # a path that leaves the folder: shown as written
            image = repr(path)
        return f"{storage.join(self.root, CAPTIONS_NAME)} line {i + 1} ({image})"


def _column(table: pa.Table, name: str, uri: str) -> pa.StringArray:
    """One field as a string array (null where a line lacks it; numbers become text)."""
    if name not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    col = table.column(name).combine_chunks()
    if not pa.types.is_string(col.type):
        try:
            col = col.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise FormatError(f"{uri}: '{name}' holds {col.type} values, not text") from None
    return col


def load_image_folder(root: str) -> ImageFolder:
    """Read ``root/captions.jsonl`` (NotFoundError / FormatError naming it)."""
    uri = storage.join(root, CAPTIONS_NAME)
    try:
        data = storage.read_bytes(uri)
    except NotFoundError:
        raise NotFoundError(
            f"{uri}: image folder has no {CAPTIONS_NAME} (one JSON object per line: "
            '{"image": "rel/path.jpg", "caption": "..."})'
        ) from None
    if not data.strip():
        raise FormatError(f"{uri}: no lines (an image component needs at least one image)")
    try:
        table = pa_json.read_json(
            io.BytesIO(data), parse_options=pa_json.ParseOptions(newlines_in_values=False)
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise FormatError(f"{uri}: not JSON lines ({exc})") from None
    if "image" not in table.column_names:
        raise FormatError(f"{uri}: no line has an 'image' field")
    return ImageFolder(
        root=root,
        paths=_column(table, "image", uri),
        captions=_column(table, "caption", uri),
        fingerprint=hashlib.sha256(data).hexdigest(),
    )


def load_image_folders(roots: Iterable[str]) -> dict[str, ImageFolder]:
    """The image folders at ``roots``, each read once, keyed by its root."""
    out: dict[str, ImageFolder] = {}
    for root in roots:
        if root not in out:
            out[root] = load_image_folder(root)
    return out


def decode_image(data: bytes, size: int, uri: str) -> torch.Tensor:
    """Encoded picture → ``uint8 [1, 3, size, size]`` RGB (EXIF orientation applied, resized
    to the square as video frames are); SampleError naming ``uri`` when it does not decode."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it is larger
            rgb = ImageOps.exif_transpose(im).convert("RGB")
            rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    except UnidentifiedImageError:
        raise SampleError(uri, "bad_image", "not a picture PIL can identify") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # truncated, too large
        raise SampleError(uri, "bad_image", f"{type(exc).__name__}: {exc}") from None
    # [S, S, 3] -> [1, 3, S, S]; the channel move in numpy (torch's uint8 permute-copy is slow)
    chw = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)[None])
    return torch.from_numpy(chw)


class StageImages:
    """The image rows of one stage: component ``c`` owns rows ``[base + start_c, base +
    start_c + len(folder_c))`` where ``base`` is the catalog's length."""

    def __init__(self, cfg: StageData, folders: Mapping[str, ImageFolder], base: int):
        self.base = base
        self.component: dict[int, tuple[ImageComponent, ImageFolder, int]] = {}
        self._starts: list[int] = []
        self._indices: list[int] = []
        start = base
        for c, comp in cfg.image_components():
            folder = folders.get(comp.images)
            if folder is None:
                folder = load_image_folder(comp.images)
            self.component[c] = (comp, folder, start)
            self._starts.append(start)
            self._indices.append(c)
            start += len(folder)
        self.end = start

    def pool(self, c: int) -> np.ndarray:
        """Rows of image component ``c`` (int64)."""
        _, folder, start = self.component[c]
        return np.arange(start, start + len(folder), dtype=np.int64)

    def fingerprints(self) -> dict[str, str]:
        """Component name → its folder's fingerprint (the cursor checks them on resume)."""
        return {comp.name: folder.fingerprint for comp, folder, _ in self.component.values()}

    def locate(self, row: int) -> tuple[ImageComponent, ImageFolder, int]:
        """(component, folder, line index) of an image row."""
        if not self.base <= row < self.end:
            raise IndexError(f"row {row} is not an image row [{self.base}, {self.end})")
        k = bisect.bisect_right(self._starts, row) - 1
        comp, folder, start = self.component[self._indices[k]]
        return comp, folder, row - start

    def key(self, row: int) -> str:
        """The sample key of an image row: its path relative to the folder."""
        _, folder, i = self.locate(row)
        return folder.path(i) or f"{CAPTIONS_NAME}:{i + 1}"

    def load(self, row: int, size: int) -> tuple[LoadedSample, dict, str]:
        """(sample without tokens, catalog-like row for the text, question) of an image row."""
        comp, folder, i = self.locate(row)
        path, caption = folder.path(i), folder.caption(i)
        where = folder.where(i)
        if not isinstance(path, str) or not path.strip():
            raise SampleError(where, "bad_caption_line", "the line has no 'image' path")
        if path.startswith("/") or "://" in path or ".." in path.replace("\\", "/").split("/"):
            raise SampleError(where, "bad_caption_line", "the image path leaves the folder")
        if not isinstance(caption, str) or not caption.strip():
            raise SampleError(where, "no_caption", "the line has no 'caption'")
        uri = storage.join(folder.root, path)
        try:
            data = storage.read_bytes(uri)
        except NotFoundError:
            raise SampleError(uri, "missing_image", f"listed at {where}") from None
        frames = decode_image(data, size, uri)
        sample = LoadedSample(
            key=path,
            source=comp.name,
            duration=0.0,
            times=IMAGE_TIMES.copy(),
            frames=frames,
            conversations=[],
            is_image=True,
        )
        return sample, {"key": path, "caption": caption}, comp.question
