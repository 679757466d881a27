"""Fixture builders for the data tests: tiny images and the on-disk layouts of real datasets."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, size=(24, 16), color=(200, 40, 40), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def jpeg_bytes(size=(64, 48), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def bad_folder(tmp_path) -> Path:
    """Every troublesome input of the issue, plus good images; returns the folder."""
    root = tmp_path / "bad"
    root.mkdir()
    write_image(root / "good.jpg")
    write_image(root / "good_grey.png", color=(90, 90, 90))
    Image.new("LA", (8, 8), (100, 0)).save(root / "grey_alpha.png")
    data = jpeg_bytes((64, 48))
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not a JPEG\n")
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(root / "cmyk.jpg", quality=95)  # red in CMYK
    png16 = Image.fromarray(np.full((10, 12), 65535, dtype=np.uint16))  # white in 16 bits
    png16.save(root / "sixteen.png")
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((5, 5), 1)
    pal.save(root / "palette_alpha.png", transparency=0)  # index 0 (black) transparent
    # EXIF orientation 6 (rotate 90 cw to display): stored 40x20 with a red left half
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    rot = Image.fromarray(arr)
    exif = rot.getexif()
    exif[0x0112] = 6
    rot.save(root / "exif_rotated.jpg", exif=exif.tobytes(), quality=95)
    write_image(root / "one_pixel.png", size=(1, 1))
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    i = png.find(b"IDAT")
    png[i + 4 + int.from_bytes(png[i - 4:i], "big")] ^= 0xFF  # bad CRC, as in some WikiArt files
    (root / "bad_crc.png").write_bytes(bytes(png))
    write_image(root / "bomb.png", size=(300, 300))  # over the lowered test limit of 10,000 px
    return root


@pytest.fixture
def wikiart_dir(tmp_path) -> Path:
    """ArtGAN WikiArt layout: wikiart/<Style>/ + wikiart_csv/ with all format quirks."""
    src = tmp_path / "artgan"
    img = src / "wikiart"
    files = [
        "Impressionism/edgar-degas_landscape-on-the-orne.jpg",
        "Impressionism/claude-monet_water-lilies.jpg",
        "Impressionism/joaquín-sorolla_beach-at-valencia.jpg",  # CSV spells it joaquãn
        "Realism/vincent-van-gogh_pine-trees-in-the-fen-1884.jpg",
        "Realism/gustave-courbet_the-stone-breakers.jpg",
        "Realism/josé-maria-velasco_valley.jpg",  # CSV has UTF-8-read-as-Latin-1 mojibake
        "Art_Nouveau_Modern/alphonse-mucha_job.jpg",
        "Art_Nouveau_Modern/gustav-klimt_the-kiss.jpg",
    ]
    for i, f in enumerate(files):
        write_image(img / f, color=(i * 30, 50, 100))
    lab = src / "wikiart_csv"
    lab.mkdir(parents=True)
    (lab / "style_class.txt").write_text("0 Impressionism\n1 Realism\n2 Art_Nouveau\n")
    (lab / "genre_class").write_text("0 landscape\n1 portrait\n2 genre_painting\n")
    (lab / "artist_class").write_text("0 claude-monet\n1 vincent-van-gogh\n2 alphonse-mucha\n")
    mojibake = "Realism/josé-maria-velasco_valley.jpg".encode().decode("latin-1")
    style_train = [
        "Impressionism/edgar-degas_landscape-on-the-orne.jpg,0",
        "Impressionism/joaquãn-sorolla_beach-at-valencia.jpg,0",
        "Realism/vincent-van-gogh_pine-trees-in-the-fen-1884.jpg,1",
        f"{mojibake},1",
        "Art_Nouveau_Modern/alphonse-mucha_job.jpg,2",
        "Art_Nouveau/gustav-klimt_the-kiss.jpg,2",  # class name used as folder: alias
        "Realism/missing-painter_lost-work.jpg,1",  # missing file
        "Realism/ãnknown-painter_ghost.jpg,1",  # unrepairable mojibake
    ]
    (lab / "style_train.csv").write_bytes(("\n".join(style_train) + "\n").encode("utf-8"))
    (lab / "style_val.csv").write_text("Impressionism/claude-monet_water-lilies.jpg,0\n"
                                       "Realism/gustave-courbet_the-stone-breakers.jpg,1\n")
    (lab / "genre_train.csv").write_text("Impressionism/edgar-degas_landscape-on-the-orne.jpg,0\n"
                                         "Realism/vincent-van-gogh_pine-trees-in-the-fen-1884.jpg,0\n")
    (lab / "genre_val.csv").write_text("Impressionism/claude-monet_water-lilies.jpg,0\n"
                                       "Art_Nouveau_Modern/alphonse-mucha_job.jpg,1\n")
    (lab / "artist_train").write_text("(Path to image),, (Groundtruth class)\n\n"
                                      "Realism/vincent-van-gogh_pine-trees-in-the-fen-1884.jpg,,1\n"
                                      "Art_Nouveau_Modern/alphonse-mucha_job.jpg,,2\n")
    (lab / "artist_val").write_text("(Path to image),, (Groundtruth class)\n\n"
                                    "Impressionism/claude-monet_water-lilies.jpg,,0\n")
    return src


@pytest.fixture
def wga_dir(tmp_path) -> Path:
    root = tmp_path / "wga"
    write_image(root / "art/a/aachen/j_couple.jpg")
    write_image(root / "art/b/bosch/garden.jpg")
    write_image(root / "art/d/durer/statue.jpg")
    lines = [
        "AUTHOR;BORN-DIED;TITLE;DATE;TECHNIQUE;LOCATION;URL;FORM;TYPE;SCHOOL;TIMEFRAME",
        "AACHEN, Hans von;(b. 1552, Köln, d. 1615, Praha);Joking Couple;c. 1596;Copperplate, 25 x 20 cm;"
        "Kunsthistorisches Museum, Vienna;https://www.wga.hu/html/a/aachen/j_couple.html;painting;genre;German;1601-1650",
        "BOSCH, Hieronymus;(b. ca. 1450, 's-Hertogenbosch, d. 1516, 's-Hertogenbosch);Garden of Earthly Delights;"
        "1500-05;Oil on oak panel;Museo del Prado, Madrid;https://www.wga.hu/html/b/bosch/garden.html;painting;"
        "religious;Netherlandish;1501-1550",
        "DÜRER, Albrecht;(b. 1471, Nürnberg, d. 1528, Nürnberg);Statue;1500;Bronze;Nürnberg;"
        "https://www.wga.hu/html/d/durer/statue.html;sculpture;religious;German;1501-1550",
        "GHOST, Painter;(b. 1600);Lost Painting;-;Oil;Nowhere;https://www.wga.hu/html/g/ghost/lost.html;"
        "painting;portrait;Italian;1601-1650",
    ]
    (root / "catalog.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("iso-8859-1"))
    return root


@pytest.fixture
def pandora_dir(tmp_path) -> Path:
    root = tmp_path / "Pandora_18k"
    write_image(root / "01_Byzantin_Iconography/Andrei_Rublev/trinity.jpg")
    write_image(root / "01_Byzantin_Iconography/Theophanes/icon_1.jpg")
    write_image(root / "18_PopArt/Andy_Warhol/marilyn.png")
    (root / "18_PopArt/Andy_Warhol/Thumbs.db").write_bytes(b"\x00\x01")
    (root / "Pandora_18k_folds.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    return root


@pytest.fixture
def lamem_dir(tmp_path) -> Path:
    root = tmp_path / "lamem"
    for i in range(1, 9):
        write_image(root / f"images/{i:08d}.jpg", color=(i * 20, 0, 0))
    (root / "splits").mkdir()
    for k in range(1, 6):
        order = [(i + k) % 8 + 1 for i in range(8)]
        (root / f"splits/train_{k}.txt").write_text("".join(f"{n:08d}.jpg {0.5 + n / 20:.6f}\n" for n in order[:5]))
        (root / f"splits/val_{k}.txt").write_text("".join(f"{n:08d}.jpg {0.5 + n / 20:.6f}\n" for n in order[5:6]))
        test = "".join(f"{n:08d}.jpg {0.5 + n / 20:.6f}\n" for n in order[6:]) + "00099999.jpg 0.900000\n"
        (root / f"splits/test_{k}.txt").write_text(test)
    return root


MEMCAT_HEADER = ('"",image_file,category,subcategory,current_height,current_width,source,searched_label,'
                 "resize_factor,H,FA,n_resp,memorability_wo_fa_correction,memorability_w_fa_correction\n")


@pytest.fixture
def memcat_dir(tmp_path) -> Path:
    root = tmp_path / "memcat"
    write_image(root / "animal/bear/000000003481.jpg")
    write_image(root / "landscape/mountain/000000000724.jpg")
    rows = [
        '"1","000000003481.jpg","animal","bear",316,500,"coco","bear",1,55,4,98,0.5612244897959183,0.5204081632653061\n',
        '"2","000000000724.jpg","landscape","mountain",375,500,"coco","mountain",1,80,10,100,0.8,0.7\n',
        '"3","000000009999.jpg","animal","bear",375,500,"coco","bear",1,40,2,80,0.5,0.475\n',
    ]
    (root / "memcat_image_data.csv").write_text(MEMCAT_HEADER + "".join(rows))
    return root


@pytest.fixture
def make_image():
    """`make_image(path, size=(24, 16), color=(200, 40, 40))` writes a small image."""
    return write_image
