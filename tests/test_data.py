"""EuroSAT datasets: split files, the RGB ImageFolder and TorchGeo's 13-band EuroSAT."""

import pytest
import torch
from helpers import SHARED_DATA as SHARED
from helpers import build_real_ms_root, write_ms_root, write_rgb_tree

from geocam.errors import DatasetError
from geocam.training.data import (
    EuroSATRGB,
    make_dataset,
    ms_spec,
    random_dihedral,
    read_split,
    rgb_spec,
)


def test_read_split_csv_and_txt_match_by_stem(tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text(",Filename,Label,ClassName\n0,Forest/Forest_1.jpg,1,Forest\n")
    txt = tmp_path / "s.txt"
    txt.write_text("Forest_1.tif\n\nRiver_3.jpg\n")
    assert read_split(csv) == {"Forest_1"}
    assert read_split(txt) == {"Forest_1", "River_3"}


def test_read_split_csv_without_filename_column(tmp_path):
    bad = tmp_path / "s.csv"
    bad.write_text("name,label\nx,1\n")
    with pytest.raises(DatasetError, match="Filename"):
        read_split(bad)


def test_rgb_dataset_split_and_labels(tmp_path):
    names = write_rgb_tree(tmp_path / "rgb")
    split = tmp_path / "split.txt"
    split.write_text("\n".join(names[::2]))
    ds = EuroSATRGB(tmp_path / "rgb", split)
    assert len(ds) == 10
    sample = ds[0]
    assert sample["image"].shape == (3, 64, 64) and sample["image"].dtype == torch.float32
    assert float(sample["image"].max()) <= 255
    labels = sorted(int(ds[i]["label"]) for i in range(len(ds)))
    assert labels == list(range(10))  # alphabetical folders = EuroSAT label order


def test_rgb_split_listing_missing_images_is_refused(tmp_path):
    names = write_rgb_tree(tmp_path / "rgb")
    split = tmp_path / "split.txt"
    split.write_text("\n".join([*names, "Forest/Forest_999.jpg"]))
    with pytest.raises(DatasetError, match="lists 21 images but 20 were found"):
        EuroSATRGB(tmp_path / "rgb", split)


def test_rgb_root_must_exist(tmp_path):
    with pytest.raises(DatasetError, match="is not a folder"):
        EuroSATRGB(tmp_path / "nope")


def test_rgb_spec_finds_validation_file(tmp_path):
    for name in ("train.csv", "validation.csv", "test.txt"):
        (tmp_path / name).write_text("Filename\n")
    spec = rgb_spec(tmp_path / "root", tmp_path)
    assert spec.splits["val"] == tmp_path / "validation.csv"
    assert spec.splits["test"] == tmp_path / "test.txt"
    (tmp_path / "test.txt").unlink()
    with pytest.raises(DatasetError, match="test.csv or test.txt"):
        rgb_spec(tmp_path / "root", tmp_path)


def test_random_dihedral_is_exact_and_covers_the_group():
    torch.manual_seed(0)
    x = torch.arange(64 * 3 * 4 * 4, dtype=torch.float32).reshape(64, 3, 4, 4)
    out = random_dihedral(x, generator=torch.Generator().manual_seed(0))
    seen = set()
    for i in range(64):
        ref = [torch.rot90(x[i], k % 4, (-2, -1)) for k in range(8)]
        ref = [r.flip(-1) if k >= 4 else r for k, r in enumerate(ref)]
        matches = [k for k, r in enumerate(ref) if torch.equal(out[i], r)]
        assert matches, "each image is an exact flip/rotation of its input"
        seen.add(matches[0])
    assert len(seen) == 8


def test_ms_dataset_band_subset(tmp_path):
    write_ms_root(tmp_path / "ms")
    ds = make_dataset(ms_spec(tmp_path / "ms", ("B04", "B03", "B02", "B8A")), "train")
    assert len(ds) == 20
    assert ds[0]["image"].shape == (4, 64, 64)


def test_ms_spec_rejects_unknown_band(tmp_path):
    with pytest.raises(DatasetError, match="B13"):
        ms_spec(tmp_path, ("B04", "B13"))


def test_ms_missing_root_gives_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="EuroSAT MS"):
        make_dataset(ms_spec(tmp_path / "missing"), "train")


@pytest.mark.skipif(not (SHARED / "eurosat-ms").is_dir(), reason="../shared/data/eurosat-ms absent")
def test_real_eurosat_ms_tiles_through_torchgeo(tmp_path):
    assert build_real_ms_root(tmp_path) == 270
    ds = make_dataset(ms_spec(tmp_path), "test")
    assert len(ds) == 54
    sample = ds[0]
    assert sample["image"].shape == (13, 64, 64)
    # real L1C digital numbers, not noise: B02 (blue) mean in a plausible reflectance range
    assert 500 < float(sample["image"][1].mean()) < 5000


@pytest.mark.skipif(
    not (SHARED / "eurosat-rgb").is_dir(), reason="../shared/data/eurosat-rgb absent"
)
def test_real_rgb_split_sizes():
    spec = rgb_spec(SHARED / "eurosat-rgb", SHARED / "eurosat-splits" / "kaggle-apollo2506")
    assert len(make_dataset(spec, "test")) == 2700
