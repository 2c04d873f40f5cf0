"""Photos of cases: the file a report or a step came with, and its thumbnail for lists and
panels (a phone on a city network should not fetch a 5 MB picture to show 120 pixels).

Thumbnails are made once with Pillow, turned the way the phone held it (EXIF orientation),
and kept beside the photos in `thumbs/`. Who may see a photo is decided by the caller
(`cases.may_see_photos`)."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import NotFound

THUMB_PX = 320  # the longer side of a thumbnail
NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,120}")  # the names web uploads are saved under


def photo_path(folder: Path, name: str) -> Path:
    """The file of photo `name` in `folder`; NotFound when the name is not one of ours or the
    file is gone."""
    if not NAME.fullmatch(name or "") or ".." in name:
        raise NotFound(f"no photo {name!r}")
    path = Path(folder) / name
    if not path.is_file():
        raise NotFound(f"photo {name!r} is not in the photos folder (was it moved?)")
    return path


def thumbnail(folder: Path, name: str) -> Path:
    """A JPEG at most THUMB_PX a side of photo `name`, made on first use."""
    source = photo_path(folder, name)
    thumb = Path(folder) / "thumbs" / f"{source.stem}-{THUMB_PX}.jpg"
    if thumb.is_file() and thumb.stat().st_mtime >= source.stat().st_mtime:
        return thumb
    try:
        with Image.open(source) as img:
            small = ImageOps.exif_transpose(img)
            small.thumbnail((THUMB_PX, THUMB_PX))
            thumb.parent.mkdir(parents=True, exist_ok=True)
            part = thumb.with_name(f".{thumb.name}.{os.getpid()}-{threading.get_ident()}")
            small.convert("RGB").save(part, "JPEG", quality=80)
            part.replace(thumb)  # whole or not at all: a reader never sees half a thumbnail
    except (UnidentifiedImageError, OSError) as exc:
        raise NotFound(f"photo {name!r} cannot be read as an image ({exc})") from None
    return thumb


__all__ = ["THUMB_PX", "photo_path", "thumbnail"]
