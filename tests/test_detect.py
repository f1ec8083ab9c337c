"""Detection decides by file names first (issue 10 item 2, issue 9 item 3): one format matching
by names runs its loader, whose error names file, video and field; only a true tie lists every
format's reasons; a downloaded Hub tree's README.md, .gitattributes and .cache/ are ignored."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fixtures import fixture

import longrvos_data
from longrvos_data.cli import main
from longrvos_data.errors import FormatDetectionError
from longrvos_data.loaders import detect_format, match_names
from longrvos_data.loaders.hf import has_card_section

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, fmt, why", [
    ("long_rvos", "long_rvos", "train/Annotations/<video>/<object>/ folders beside meta_expressions.json"),
    ("mevis", "mevis", "train/mask_dict.json beside meta_expressions"),
    ("revos", "revos", "./meta_expressions_train_.json"),
    ("lvos", "lvos", "train/train_expression_meta.json"),
    ("ref_youtube_vos", "ref_youtube_vos", "./meta_expressions/<split>/meta_expressions.json"),
])
def test_the_samples_match_one_format_by_names(name, fmt, why):
    assert match_names(REPO / "samples" / name) == {fmt: why}
    assert detect_format(REPO / "samples" / name) == fmt


def test_a_wrong_obj_id_gives_the_loaders_error_not_a_list_of_formats(tmp_path, capsys):
    """Before: "matches no known format; pass --format" with nine formats' reasons."""
    base = fixture("long_rvos_hand").build(tmp_path)
    meta = base / "train" / "meta_expressions.json"
    text = meta.read_text()
    meta.write_text(text.replace('"obj_id": 1, "type": "dynamic"', '"obj_id": [1], "type": "dynamic"'))
    assert main(["info", str(base)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"longrvos info: error: {meta}: video 'vidA': field 'expressions.0.obj_id': expected int/str, got list"]


def test_a_corrupt_byte_gives_the_loaders_error(tmp_path, capsys):
    """Before: "matches no known format" (the MeViS probe could not parse the file)."""
    split = fixture("mevis_hand").build(tmp_path) / "train"
    meta = split / "meta_expressions_v2.json"
    data = bytearray(meta.read_bytes())
    data[40] = 1
    meta.write_bytes(bytes(data))
    assert main(["info", str(split)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"longrvos info: error: {meta}: invalid JSON (Invalid control character at: line 2 column 28 (char 40))")


def test_mevis_v2_release_names_and_lvos_metadata_at_the_root(tmp_path):
    valid = tmp_path / "MeViSv2" / "valid"
    valid.mkdir(parents=True)
    (valid / "meta_expressions_v2_release.json").write_text('{"videos": {}}')
    assert match_names(valid) == {"mevis": "./meta_expressions_v2_release.json (MeViS v2)"}
    lvos = tmp_path / "LVOS"
    (lvos / "valid" / "JPEGImages").mkdir(parents=True)
    (lvos / "valid_meta.json").write_text('{"videos": {}}')
    assert match_names(lvos) == {"lvos": "./valid_meta.json"}
    assert match_names(lvos / "valid") == {"lvos": "../valid_meta.json"}


def test_a_true_tie_lists_the_tied_formats_reasons(tmp_path):
    (tmp_path / "meta_davis.json").write_text("{}")
    (tmp_path / "instances.json").write_text("{}")
    with pytest.raises(FormatDetectionError) as info:
        detect_format(tmp_path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{tmp_path} matches several formats equally; pass --format. Reasons:"
    assert sorted(line.split(" (")[0].strip() for line in lines[1:]) == ["davis", "ytvis"]
    assert f"  davis (0.00): by name: ./meta_davis.json; found {tmp_path / 'meta_davis.json'}; it has no " \
           "'videos' object" in lines


def _hub_tree(root: Path) -> Path:
    """Long-RVOS as a Hub snapshot leaves it: the Hub's own card, .gitattributes, .cache/, a data/ folder."""
    base = fixture("long_rvos_hand").build(root)
    (base / "README.md").write_text("---\nlicense: cc-by-nc-4.0\nconfigs:\n- config_name: default\n"
                                    "  data_files: train/*.tar.gz\n---\n# Long-RVOS\n")
    (base / ".gitattributes").write_text("*.tar.gz filter=lfs diff=lfs merge=lfs -text\n")
    cache = base / ".cache" / "huggingface" / "download" / "train"
    cache.mkdir(parents=True)
    (cache / "Annotations.tar.gz.metadata").write_text("0123abcd\n")
    (base / "data" / "videos").mkdir(parents=True)
    return base


def test_a_downloaded_hub_tree_is_read_without_its_readme(tmp_path, caplog, capsys):
    """Before: the Hub's README.md beside data/ was parsed as an hf card (for the root and for
    folders up to two levels below it)."""
    base = _hub_tree(tmp_path)
    assert not has_card_section(base)
    assert match_names(base) == {"long_rvos": "train/Annotations/<video>/<object>/ folders beside "
                                               "meta_expressions.json"}
    with caplog.at_level(logging.WARNING, logger="longrvos_data"):
        assert main(["info", str(base / "train")]) == 0
        assert main(["info", str(base)]) == 0
    assert caplog.records == []
    assert "warning" not in capsys.readouterr().err.lower()


def test_hf_is_recognised_by_this_packages_card_section_only(tmp_path):
    from longrvos_data.converters import hf

    hand = fixture("hf_hand")
    out = tmp_path / "out"
    hf.write({"train": hand.videos(tmp_path / "src")}, out)
    assert has_card_section(out)
    assert match_names(out) == {"hf": "README.md with the longrvos card section"}
    assert detect_format(out / "data") == "hf"
    card = out / "README.md"
    text = card.read_text()
    card.write_text(text.replace("\nlongrvos:", "\nsomething_else:", 1))
    assert not has_card_section(out)
    assert "hf" not in match_names(out)
    assert match_names(out) == {}
    assert longrvos_data.loaders.get_loader("hf").detect(out).confidence == 0
