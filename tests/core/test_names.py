"""Model names as people write them join their zoo cards (core.zoo.names), in the analysis
and through `--names FILE`: matched without guessing, every match and miss reported."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from core.analysis import analyze, load_csv, prepare
from core.analysis.data import REFERENCE, with_zoo_names
from core.cli.main import main
from core.errors import DataError, UsageError
from core.zoo import get_card, model_complexity, zoo_names
from core.zoo.names import MatchKind, match_names, name_key, read_name_map

# The model names of the study's own results table, and the cards they mean.
STUDY: dict[str, str] = {
    "AlexNet": "alexnet",
    "VGG-11": "vgg11",
    "VGG-13": "vgg13",
    "VGG-16": "vgg16",
    "VGG-19": "vgg19",
    "VGG-11_BN": "vgg11_bn",
    "VGG-13_BN": "vgg13_bn",
    "VGG-16_BN": "vgg16_bn",
    "VGG-19_BN": "vgg19_bn",
    "ResNet-18": "resnet18",
    "ResNet-34": "resnet34",
    "ResNet-50": "resnet50",
    "ResNet-101": "resnet101",
    "ResNet-152": "resnet152",
    "SqueezeNet-v1.0": "squeezenet1_0",
    "SqueezeNet-v1.1": "squeezenet1_1",
    "DenseNet-121": "densenet121",
    "DenseNet-169": "densenet169",
    "DenseNet-201": "densenet201",
    "DenseNet-161": "densenet161",
    "Inception-v3": "inception_v3",
    "GoogLeNet": "googlenet",
    "ShuffleNet-v2_x1.0": "shufflenet_v2_x1_0",
    "MobileNet-v2": "mobilenet_v2",
    "MobileNet-v3_large": "mobilenet_v3_large",
    "MobileNet-v3_small": "mobilenet_v3_small",
    "ResNeXt-50(32x4d)": "resnext50_32x4d",
    "ResNeXt-101(32x8d)": "resnext101_32x8d",
    "Wide-ResNet-50-2": "wide_resnet50_2",
    "Wide-ResNet-101-2": "wide_resnet101_2",
    "MNASNet-1.0": "mnasnet1_0",
    "MNASNet-0.5": "mnasnet0_5",
    "EfficientNet-B0": "efficientnet_b0",
}
EXACT = {"AlexNet", "GoogLeNet"}  # the zoo names, in other case: no note needed
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


# -- matching -------------------------------------------------------------------------------


def test_the_study_names_all_join_the_right_cards() -> None:
    assert set(STUDY.values()) <= set(zoo_names())
    matches = match_names(STUDY)
    assert matches.matched == STUDY
    assert matches.unmatched == () and matches.ambiguous == {} and matches.files == ()
    assert {n for n, how in matches.how.items() if how is MatchKind.EXACT} == EXACT
    assert {n for n, how in matches.how.items() if how == "tolerant"} == set(STUDY) - EXACT
    (note,) = matches.notes()
    assert note.startswith("31 model name(s) matched to zoo cards by spelling")
    assert all(f"{given} -> {STUDY[given]}" in note for given in set(STUDY) - EXACT)


def test_name_key_is_one_to_one_over_the_zoo_catalogue() -> None:
    names = zoo_names()
    keys = {name_key(name): name for name in names}
    assert len(keys) == len(names), "two zoo cards share a name key"
    assert all(how is MatchKind.EXACT for how in match_names(names).how.values())
    # Any zoo name in capitals with dashes for underscores still finds its own card.
    shouted = {name.upper().replace("_", "-"): name for name in names}
    assert match_names(shouted).matched == shouted


@pytest.mark.parametrize(
    ("given", "zoo"),
    [
        ("mnasnet0_5", "mnasnet0_5"),
        ("MNASNet 0.5", "mnasnet0_5"),
        ("MNASNet-0.5", "mnasnet0_5"),
        ("squeezenet 1.0", "squeezenet1_0"),
        ("ShuffleNet-v2 (x1.0)", "shufflenet_v2_x1_0"),
        ("ViT-B/16", "vit_b_16"),
        ("MobileNetV3-Large", "mobilenet_v3_large"),
        ("mobilenet v3 small", "mobilenet_v3_small"),
        ("RegNetX-1.6GF", "regnet_x_1_6gf"),  # two numbers stay two...
        ("RegNetX-16GF", "regnet_x_16gf"),  # ...and one stays one
        ("Swin-V2-T", "swin_v2_t"),
        ("EfficientNetV2-S", "efficientnet_v2_s"),
    ],
)
def test_spellings_that_match(given: str, zoo: str) -> None:
    assert match_names([given]).matched == {given: zoo}


def test_a_family_name_is_refused_as_ambiguous_with_its_candidates() -> None:
    matches = match_names(["MobileNet-v3", "ResNet", "mobilenetv3"])
    assert matches.matched == {} and matches.unmatched == ()
    assert matches.ambiguous == {
        "MobileNet-v3": ("mobilenet_v3_large", "mobilenet_v3_small"),
        "ResNet": RESNETS,
        "mobilenetv3": ("mobilenet_v3_large", "mobilenet_v3_small"),
    }
    note = next(n for n in matches.notes() if "'MobileNet-v3'" in n)
    assert "mobilenet_v3_large, mobilenet_v3_small" in note and "--names FILE" in note
    assert "none was used" in note


def test_an_unknown_name_is_reported_with_the_nearest_cards() -> None:
    matches = match_names(["Foo-Net", "ResNet-51", "Inception"])
    assert matches.matched == {} and matches.ambiguous == {}
    assert matches.unmatched == ("Foo-Net", "ResNet-51", "Inception")
    assert "resnet50" in matches.suggestions["ResNet-51"]
    # The one card of a family is suggested, never taken.
    assert matches.suggestions["Inception"][0] == "inception_v3"
    notes = matches.notes()
    assert len(notes) == 3 and all("No zoo card matches" in n for n in notes)
    assert "'ResNet-51' (nearest: resnet50" in notes[1] and "--names FILE" in notes[1]


def test_model_files_and_zoo_names_pass_through() -> None:
    matches = match_names(["nets/mine.onnx", "resnet18", "ResNet50"])
    assert matches.files == ("nets/mine.onnx",)
    assert matches.matched == {"resnet18": "resnet18", "ResNet50": "resnet50"}
    assert matches.card_source("nets/mine.onnx") == "nets/mine.onnx"
    assert matches.notes() == []


def test_a_mapping_wins_and_is_checked() -> None:
    mapping = {"MobileNet-v3": "MobileNet_V3_Large", "ResNet-18": "resnet34"}
    matches = match_names(["MobileNet-v3", "ResNet-18", "ResNet-50"], mapping)
    assert matches.matched == {
        "MobileNet-v3": "mobilenet_v3_large",
        "ResNet-18": "resnet34",
        "ResNet-50": "resnet50",
    }
    assert (
        matches.how["MobileNet-v3"] is MatchKind.MAPPED and matches.how["ResNet-50"] == "tolerant"
    )
    assert any(
        "by the names mapping: MobileNet-v3 -> mobilenet_v3_large" in n for n in matches.notes()
    )
    with pytest.raises(UsageError, match="'resnet51', which is not a zoo model") as info:
        match_names(["ResNet-51"], {"ResNet-51": "resnet51"})
    assert info.value.hint is not None and "resnet50" in info.value.hint


# -- the names file -------------------------------------------------------------------------


def test_a_csv_names_file_with_or_without_a_header(tmp_path: Path) -> None:
    with_header = tmp_path / "names.csv"
    with_header.write_text(
        'name,zoo\n# the study\'s families\nMobileNet-v3,mobilenet_v3_small\n\n"ResNet, 18",ResNet18\n',
        encoding="utf-8",
    )
    assert read_name_map(with_header) == {
        "MobileNet-v3": "mobilenet_v3_small",
        "ResNet, 18": "resnet18",
    }
    bare = tmp_path / "bare.txt"
    bare.write_text("MobileNet-v3 , mobilenet_v3_large\r\n", encoding="utf-8")
    assert read_name_map(bare) == {"MobileNet-v3": "mobilenet_v3_large"}


def test_a_json_names_file(tmp_path: Path) -> None:
    path = tmp_path / "names.json"
    path.write_text(json.dumps({"MobileNet-v3": "mobilenet_v3_large", "ResNet": "resnet50"}))
    assert read_name_map(path) == {"MobileNet-v3": "mobilenet_v3_large", "ResNet": "resnet50"}


@pytest.mark.parametrize(
    ("name", "text", "error", "message"),
    [
        (
            "names.csv",
            "MobileNet-v3,mobilenet_v3\n",
            DataError,
            r"line 1 maps 'MobileNet-v3' to 'mobilenet_v3', which is not a zoo model",
        ),
        ("names.csv", "a,resnet18,extra\n", DataError, "line 1 is not a pair of names"),
        ("names.csv", "name,zoo\nlonely\n", DataError, "line 2 is not a pair of names"),
        ("names.csv", "name,zoo\n", DataError, "maps no names"),
        ("names.csv", "", DataError, "is empty"),
        ("names.csv", "a,resnet18\na,resnet34\n", DataError, "earlier entry maps it to resnet18"),
        ("names.json", '{"a": "resnet18",}', DataError, "not valid JSON"),
        ("names.json", '["a", "resnet18"]', DataError, "JSON list, not an object"),
        ("names.json", '{"a": 18}', DataError, "is not a pair of names"),
        ("names.json", '{"a": "resnet19"}', DataError, "'resnet19', which is not a zoo model"),
    ],
)
def test_a_bad_names_file_says_what_is_wrong(
    tmp_path: Path, name: str, text: str, error: type[Exception], message: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(error, match=message) as info:
        read_name_map(path)
    assert isinstance(info.value, (DataError, UsageError)) and info.value.hint


def test_a_missing_names_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="No names file") as info:
        read_name_map(tmp_path / "absent.csv")
    assert info.value.hint is not None and "name,zoo" in info.value.hint


def test_an_unknown_target_suggests_zoo_names(tmp_path: Path) -> None:
    path = tmp_path / "names.csv"
    path.write_text("Foo-Net,resnet51\n")
    with pytest.raises(DataError) as info:
        read_name_map(path)
    assert info.value.hint is not None and "resnet50" in info.value.hint


# -- the analysis ---------------------------------------------------------------------------


def study_table(names: dict[str, str], batches: tuple[int, ...] = (1, 4)) -> pd.DataFrame:
    """A long-schema table as a paper gives it: model names as written, no params, FLOPs
    or accuracy."""
    rows = []
    for given, zoo in names.items():
        facts = model_complexity(zoo) if zoo else None
        flops = facts.flops if facts is not None else 1e9
        for batch in batches:
            rows.append(
                {
                    "model": given, "backend": "torch", "device": "cpu", "precision": "fp32",
                    "batch_size": batch, "per_image_ms": flops / 4e8 * (0.6 + 0.4 / batch) + 1.0,
                    "status": "ok",
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_a_study_table_gets_every_models_facts_from_its_card(tmp_path: Path) -> None:
    path = tmp_path / "study.csv"
    study_table(STUDY).to_csv(path, index=False)
    inp = prepare(load_csv(path))
    frame = inp.frame
    assert set(frame["model"]) == set(STUDY)  # the rows keep the names as written
    assert frame[["params", "flops", "top1", "top5"]].notna().all().all()
    for given, zoo in STUDY.items():
        row = frame.loc[frame["model"] == given].iloc[0]
        complexity, card = model_complexity(zoo), get_card(zoo)
        assert complexity is not None
        assert (row["params"], row["flops"]) == (complexity.params, complexity.flops), given
        assert math.isclose(row["top1"], card.acc1), given
    assert set(frame["accuracy_source"]) == {REFERENCE}
    assert inp.name_matches is not None and inp.name_matches.matched == STUDY
    matched = next(n for n in inp.notes if "matched to zoo cards by spelling" in n)
    assert "ResNeXt-50(32x4d) -> resnext50_32x4d" in matched and "31 model name(s)" in matched
    assert any("params taken from the model zoo for 33 model(s)" in n for n in inp.notes)


def test_an_ambiguous_name_gets_no_facts_until_it_is_mapped() -> None:
    table = study_table(
        {"MobileNet-v3": "mobilenet_v3_large", "ResNet-18": "resnet18", "Foo-Net": ""}
    )
    inp = prepare(table)
    by_model = inp.frame.groupby("model")["params"].first()
    assert math.isnan(by_model["MobileNet-v3"]) and math.isnan(by_model["Foo-Net"])
    assert any("'MobileNet-v3' fits 2 zoo cards" in n for n in inp.notes)
    assert any("No zoo card matches the model name 'Foo-Net'" in n for n in inp.notes)

    mapped = prepare(table, names={"MobileNet-v3": "mobilenet_v3_large"})
    params = mapped.frame.groupby("model")["params"].first()
    large = model_complexity("mobilenet_v3_large")
    assert large is not None and params["MobileNet-v3"] == large.params
    assert any(
        "by the names mapping: MobileNet-v3 -> mobilenet_v3_large" in n for n in mapped.notes
    )
    assert not any("fits 2 zoo cards" in n for n in mapped.notes)
    # analyze() takes the same mapping.
    result = analyze(table, names={"MobileNet-v3": "mobilenet_v3_large"})
    assert any("by the names mapping" in n for n in result["notes"])


def test_the_predictor_gets_zoo_names_and_the_callers_frame_is_kept() -> None:
    table = study_table({"ResNet-18": "resnet18", " MobileNet-v3 ": "mobilenet_v3_small"})
    renamed, matches = with_zoo_names(table, {"MobileNet-v3": "mobilenet_v3_small"})
    assert set(renamed["model"]) == {"resnet18", "mobilenet_v3_small"}
    assert set(table["model"]) == {"ResNet-18", " MobileNet-v3 "}
    assert matches.how["MobileNet-v3"] is MatchKind.MAPPED


# -- the command line -----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def private_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def test_analyze_with_a_names_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    table = {
        "ResNet-18": "resnet18", "ResNet-50": "resnet50", "SqueezeNet-v1.1": "squeezenet1_1",
        "VGG-11": "vgg11", "MobileNet-v3": "mobilenet_v3_small",
    }  # fmt: skip
    csv_path = tmp_path / "study.csv"
    study_table(table, batches=(1, 2, 4)).to_csv(csv_path, index=False)
    names = tmp_path / "names.csv"
    names.write_text("name,zoo\nMobileNet-v3,mobilenet_v3_small\n", encoding="utf-8")

    code = main(["analyze", "--csv", str(csv_path), "--names", str(names), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    result = json.loads(out)
    notes = result["notes"]
    assert any("by the names mapping: MobileNet-v3 -> mobilenet_v3_small" in n for n in notes)
    assert any(
        "ResNet-18 -> resnet18" in n and "SqueezeNet-v1.1 -> squeezenet1_1" in n for n in notes
    )
    assert any("No measured accuracy for 5 model(s)" in n for n in notes)
    assert sorted(result["input"]["models"]) == sorted(table)

    code = main(["analyze", "--csv", str(csv_path), "--names", str(tmp_path / "none.csv")])
    _, err = capsys.readouterr()
    assert code == 2 and "No names file" in err and "Traceback" not in err


def test_predict_finds_a_model_written_as_people_write_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    table = {given: STUDY[given] for given in list(STUDY)[9:15]}  # ResNet-18 ... SqueezeNet-v1.0
    csv_path = tmp_path / "study.csv"
    study_table(table, batches=(1, 2, 4)).to_csv(csv_path, index=False)
    code = main(["predict", "-m", "ResNet-50", "--batch", "4", "--csv", str(csv_path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    prediction = json.loads(out)
    assert prediction["model"] == "resnet50" and prediction["measured_latency_ms"] is not None
    assert "ResNet-50 -> resnet50" in " ".join(err.split())
